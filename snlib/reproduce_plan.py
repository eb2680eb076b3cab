"""``snlib reproduce --plan``: what a reproduction would train, before the hours, training nothing.

Per notebook (the plan its ``setup`` call names, ``snlib.study.plans``): the runs it asks for, grouped by recipe
(seeds, budget in iterations, split), how many of them are already recorded in the records folder
(``results/runs/<preset>/`` or ``--records-root``) and so will not train, and the time of the rest. A run shared
with an earlier notebook (e.g. notebook 12 reads notebook 01's runs) is counted where it first trains. Where the
protocol selects the learning rates on validation (``cpu``), the rate of a final run is not known before the
selection: such a run counts as recorded when a record of the same configuration at any rate exists. The selection
counts its grid and its refinement midpoints (``Protocol.refinements`` rounds of two midpoints a recipe and
selection seed, whose rates follow from the grid's results: :func:`refinement_runs`); it is still a minimum, since a
collapsed run's rerun and a best rate's extensions past the grid's edge are not known before the grid has run.
Where the protocol chooses its budget by a pilot (``Protocol.pilot_iterations``), the pilot's runs come first
(every notebook's set-up trains or reads them); when all of them are recorded the budget is the pilot's (read from
its records), else it is not known before the pilot and every protocol run is counted at its largest, the pilot's
length (the budget is at most that: ``snlib.study.pilot.budget``), so the time is an upper bound.

The time is ``iterations x P x K / images per second``, the rate measured here by :func:`step_rate` (a few training
steps of the preset's model on random images: the step only, not the data loading, the evaluations or the building
of a trunk cache; with a cached frozen trunk, the steps of the stages it trains on the trunk's output; on a CPU at
a small batch, scaled per image).
"""
from __future__ import annotations

import ast
import dataclasses
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from . import settings
from .presets import TrainConfig, config_hash
from .records import load_record

#: The notebooks' parameters that are not a plan's: the common ones, ``overrides``, ``protocol_sizes``.
_SETUP_PARAMETERS = ("preset", "dataset", "data_root", "output_dir", "overrides", "protocol_sizes")


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run a notebook asks for; ``lr_known``: False where its rate comes from a selection not yet run."""
    config: TrainConfig
    iterations: int
    lr_known: bool = True

    @property
    def key(self) -> str:
        """The run's identity as far as it is known: its hash, or its hash without the rate."""
        if self.lr_known:
            return config_hash(self.config)
        return config_hash(self.config.replace(lr=1.0))


def notebook_plan_name(path: Path) -> str:
    """The plan a notebook's ``setup("name", ...)`` call opens."""
    import nbformat

    source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup" and node.args:
            return node.args[0].value
    raise ValueError(f"{path.name}: no setup(...) call")


def planned_runs(plan_name: str, study, made) -> list[PlannedRun]:
    """The runs the notebook of ``plan_name`` trains or reads, from its settled ``study`` (no selection run) and
    its plan ``made``, as the notebook's calls into ``snlib.study`` ask for them."""
    protocol = study.protocol
    if plan_name == "later_losses":   # the later losses' rates where the protocol fixes them or the overrides force
        from .study.later import later_rates

        study = dataclasses.replace(study, rates={**study.rates, **later_rates(study, made.recipes, select=False)[0]})
    known = bool(study.rates) or "lr" in study.overrides

    def run(recipe, seed=0, lr_known=known, **fields):
        config = study.config(recipe, seed=seed, **fields)
        return PlannedRun(config, config.iterations, lr_known or "lr" in fields)

    def finals(recipes, seeds, iterations=None):
        return [run(r, s, **protocol.budget(iterations)) for r in recipes for s in seeds]

    convergence = [run(loss, s, split="val", train_fraction=f, **protocol.budget(curves=True))
                   for f in protocol.fractions for loss in protocol.convergence_losses
                   for s in protocol.convergence_seeds]
    selection = [] if protocol.rates else [run(r, s, split="val", lr=lr, **protocol.budget(curves=True))
                                           for r in protocol.selection for lr in protocol.lrs
                                           for s in protocol.selection_seeds]
    if plan_name == "lr_selection":
        return selection
    if plan_name in ("table1", "ablation", "gallery_size", "template"):
        return finals(made.losses, made.seeds)
    if plan_name == "other_datasets":
        return _other_datasets(study, made)
    if plan_name == "sensitivity":
        variants = [{**made.fixed, name: v} for name, values in made.sweeps.items() for v in values]
        return ([run(v["loss"], s, **{k: x for k, x in v.items() if k != "loss"}) for v in variants
                 for s in made.seeds] + [run(made.fixed["loss"], s) for s in made.noise_seeds])
    if plan_name == "convergence":
        return convergence
    if plan_name == "later_losses":   # the later losses' selection (as Table 1's), then SN, Table 1's and theirs
        mine = [] if protocol.rates or "lr" in study.overrides else [
            run(r, s, split="val", lr=lr, **protocol.budget(curves=True))
            for r in made.recipes for lr in protocol.lrs for s in protocol.selection_seeds]
        return mine + finals(("sn", *made.baselines, *made.recipes), made.seeds)
    if plan_name == "claims":
        return (selection + finals(protocol.recipes, protocol.seeds)
                + finals(protocol.selection, protocol.long_seeds, protocol.long_factor * protocol.iterations)
                + convergence)
    # the visual notebooks: the SN run (pools.before_after) and the networks they compare, seed 0
    return [run(loss) for loss in dict.fromkeys(["sn", *(v for v in made.networks.values() if v)])]


def pilot_runs(study, protocol) -> list[PlannedRun]:
    """The runs of ``protocol``'s pilot (``snlib.study.pilot.pilot_runs``, the ones ``protocol.pilot_records``
    trains) in ``study``; none without a pilot."""
    from .study import pilot

    if not protocol.pilot_iterations:
        return []
    configs = [study.config(**run) for run in pilot.pilot_runs(protocol)]
    return [PlannedRun(config, config.iterations) for config in configs]


def settle_for_plan(study, protocol, root: Path, recorded: set[str]):
    """``(study, pilot runs, budget known)``: ``study`` settled as ``snlib.study.protocol.settle`` settles it, with
    no selection run and no pilot trained. With all of the pilot's runs recorded in ``root`` the budget is the one
    their table chooses (``snlib.study.pilot.budget``); else it is the pilot's length, its upper bound, and
    ``budget known`` is False."""
    from .study import pilot
    from .study.protocol import settle

    if not protocol.pilot_iterations or "iterations" in study.overrides:
        return settle(study, protocol, select=False), [], True
    without = dataclasses.replace(protocol, pilot_iterations=0, epochs=None)
    runs = pilot_runs(settle(study, without, select=False), protocol)
    known = all(r.key in recorded for r in runs)
    if known:
        table = pilot.pilot_table([load_record(root / f"{r.key}.json") for r in runs], protocol.metric,
                                  protocol.plateau_tolerance, protocol.plateau_tail)
        budget = pilot.budget(table)
    else:
        budget = protocol.pilot_iterations
    return settle(study, dataclasses.replace(without, iterations=budget), select=False), runs, known


def _other_datasets(study, made) -> list[PlannedRun]:
    """Notebook 02: its recipes and seeds on each data set that is present, at the preset's schedule."""
    from .study import find_datasets

    present, _ = find_datasets(made.datasets)
    runs = []
    for name, root, options in present:
        other = study.with_dataset(name, root, options)
        for loss in made.losses:
            for seed in made.seeds:
                config = other.config(loss, seed)
                per_epoch = other.data.num_train_pids // config.p
                runs.append(PlannedRun(config, config.iterations or config.epochs * per_epoch))
    return runs


def recorded_configs(root: Path, version: int | None = None) -> list[TrainConfig]:
    """The configuration of every record in the folder ``root``; with ``version``, of the records of that protocol
    version only (a study refuses the others)."""
    configs = []
    for path in sorted(Path(root).glob("*.json")) if Path(root).is_dir() else []:
        try:
            record = load_record(path)
        except Exception:   # a damaged record: the study names it when it reads it
            continue
        if version is None or record.protocol_version == version:
            configs.append(record.config)
    return configs


def recorded_keys(configs: list[TrainConfig]) -> set[str]:
    """Each configuration's hash and its hash without the rate (:attr:`PlannedRun.key`)."""
    return {key for c in configs for key in (config_hash(c), config_hash(c.replace(lr=1.0)))}


def refinement_runs(grid: list[PlannedRun], protocol, configs: list[TrainConfig]) -> list[dict]:
    """``[{recipe, runs, iterations}]``: per recipe of the selection ``grid`` (its planned runs on the grid), the
    refinement runs still to train: ``protocol.refinements`` rounds x 2 midpoints x the selection seeds (an upper
    bound: a best rate at an edge of the rates tried has one neighbour, a midpoint already tried is not trained
    again), less those recorded: validation runs of the recipe at the grid's budget and seeds whose rate is neither
    on the grid nor one of its edge extensions (``snlib.study.protocol.edge_rates``)."""
    from .study.protocol import edge_rates

    if not protocol.refinements or not grid:
        return []
    up, down = edge_rates(protocol)
    known = [*protocol.lrs, *up, *down]
    off_grid = defaultdict(int)   # configuration without rate and seed -> its recorded off-grid runs
    for c in configs:
        if c.seed in protocol.selection_seeds and not any(abs(c.lr - lr) <= 1e-6 * lr for lr in known):
            off_grid[config_hash(c.replace(lr=1.0, seed=0))] += 1
    expected = protocol.refinements * 2 * len(protocol.selection_seeds)
    out = []
    for recipe in dict.fromkeys(r.config.label for r in grid):
        planned = next(r for r in grid if r.config.label == recipe)
        if (runs := max(0, expected - off_grid[config_hash(planned.config.replace(lr=1.0, seed=0))])):
            out.append({"recipe": recipe, "runs": runs, "iterations": planned.iterations})
    return out


def step_rate(config: TrainConfig, steps: int = 3, batch_ids: int | None = None, warmup: int = 3,
              min_seconds: float = 1.0) -> float:
    """Training images per second of ``config``'s model, loss and optimiser (random weights and images at its
    input size and precision): the batch over the median time of a step, timed one by one after ``warmup`` steps
    (the first calls build the kernels' primitives and the allocator's pools) until at least ``steps`` steps and
    ``min_seconds`` seconds (a cheap step timed a few times reads mostly noise), at ``batch_ids`` identities of
    ``config.k`` images (default: the config's P on a GPU or from a trunk cache, 2 on a CPU otherwise, where a
    full batch of ResNet-50 takes many seconds; a small batch underestimates the rate of a cheap step). With a
    frozen trunk (``train_from``) the optimiser holds only what trains; with its cache (``trunk_cache``) the steps
    start from the trunk's output, computed once before the timing, as the engine's."""
    from . import trunk
    from .engine import resolve_device
    from .distributed import DistInfo
    from .losses import loss_from_config
    from .models import build_model, model_options
    from .precision import resolve_precision

    device = resolve_device(config, DistInfo())
    p = batch_ids or (config.p if device.type == "cuda" or trunk.cached(config) else 2)
    ids = 2 * p
    model = build_model(**{**model_options(config), "pretrained": False, "weights_path": None}, num_classes=ids)
    if config.train_from:
        frozen = trunk.freeze(model, config.train_from)
    model = model.to(device)
    precision = resolve_precision(config, device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = loss_from_config(config, ids, model.feat_dim).to(device)
    optimizer = torch.optim.Adam([*(q for q in model.parameters() if q.requires_grad), *criterion.parameters()],
                                 lr=config.lr)
    images = torch.randn(p * config.k, 3, config.height, config.width, device=device)
    if precision.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.arange(p, device=device).repeat_interleave(config.k)
    model.train()
    net = model
    if trunk.cached(config):
        with torch.no_grad(), precision.autocast(device):
            images = frozen(images).float()
        net = trunk.FromTrunk(model, config.train_from)

    def step():   # as the engine's: forward under autocast, the loss in float32, backward, Adam
        with precision.autocast(device):
            out = net(images)
        loss = criterion(out.features.float(), labels,
                         logits=out.logits.float() if out.logits is not None else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed_step() -> float:
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        timed_step()
    times = []
    while len(times) < steps or sum(times) < min_seconds:
        times.append(timed_step())
    return len(images) / statistics.median(times)


def plan_reproduction(preset: str, dataset: str, data_root, notebooks: list[str] | None = None,
                      extra_parameters: dict | None = None, records_root=None, steps: int = 3) -> dict:
    """The plan of ``snlib reproduce`` with these arguments (module docstring), printed and returned:
    ``{"notebooks": [{notebook, plan, runs: [{recipe, seeds, iterations, split, runs, recorded}], to_train,
    iterations}], "images_per_s", "hours"}``."""
    from .reproduce import _plan, list_notebooks
    from .study import plans
    from .study.study import open_study

    extra = dict(extra_parameters or {})
    common = {"preset": preset, "dataset": dataset,
              "data_root": settings.portable_path(settings.user_path(data_root))}
    chosen = _plan(list_notebooks(notebooks), {**common, "output_dir": "", **extra})
    overrides, sizes = extra.get("overrides") or {}, extra.get("protocol_sizes")
    with tempfile.TemporaryDirectory() as scratch:
        study = open_study(preset, dataset, settings.user_path(data_root), scratch, **overrides)
        root = settings.user_path(records_root) / preset if records_root else study.records_root
        protocol = plans.study_protocol(study, sizes)
        configs = recorded_configs(root, protocol.version)
        recorded = recorded_keys(configs)
        study, piloted, budget_known = settle_for_plan(study, protocol, root, recorded)
        seen = {r.key for r in piloted}
        rows = [_notebook_row("pilot", "pilot", piloted, recorded)] if piloted else []
        for nb, parameters in chosen.items():
            name = notebook_plan_name(nb)
            made = plans.PLANS[name](study, **{k: v for k, v in parameters.items() if k not in _SETUP_PARAMETERS})
            runs = [r for r in planned_runs(name, study, made) if r.key not in seen]
            seen |= {r.key for r in runs}
            grid = [r for r in runs if r.config.split == "val" and name in ("lr_selection", "later_losses")]
            rows.append(_notebook_row(nb.name, name, runs, recorded,
                                      refinement_runs(grid, study.protocol, configs)))
        rate = step_rate(study.config("sn"), steps=steps)
        batch = study.base.p * study.base.k
    total = sum(row["iterations"] for row in rows)
    plan = {"preset": preset, "dataset": dataset, "records": settings.portable_path(root),
            "protocol": {"iterations": study.protocol.iterations, "epochs": study.protocol.epochs,
                         "budget_known": budget_known, "version": study.protocol.version,
                         "seeds": list(study.protocol.seeds), "rates": study.protocol.rates or "selected on validation"},
            "notebooks": rows, "images_per_s": round(rate, 2), "batch": batch,
            "hours": round(total * batch / rate / 3600, 2)}
    print(describe_plan(plan, study))
    return plan


def _notebook_row(notebook: str, plan_name: str, runs: list[PlannedRun], recorded: set[str],
                  refinements: list[dict] | None = None) -> dict:
    groups = defaultdict(list)
    for r in runs:
        groups[(r.config.label, r.iterations, r.config.split, r.config.train_fraction)].append(r)
    table = [{"recipe": recipe, "seeds": sorted({r.config.seed for r in members}), "iterations": iterations,
              "split": split, "train_fraction": fraction, "runs": len(members),
              "recorded": sum(r.key in recorded for r in members)}
             for (recipe, iterations, split, fraction), members in groups.items()]
    refinements = refinements or []
    return {"notebook": notebook, "plan": plan_name, "runs": table, "refinements": refinements,
            "to_train": sum(r.key not in recorded for r in runs) + sum(g["runs"] for g in refinements),
            "iterations": (sum(r.iterations for r in runs if r.key not in recorded)
                           + sum(g["runs"] * g["iterations"] for g in refinements))}


def describe_plan(plan: dict, study) -> str:
    """The plan as the console shows it."""
    protocol = plan["protocol"]
    budget = f"{protocol['iterations']} iterations" + (f" ({protocol['epochs']} epochs)" if protocol["epochs"] else "")
    if not protocol["budget_known"]:
        budget = (f"at most {budget}: the pilot's length (its runs are not all recorded, so the budget it chooses is "
                  "not known yet; every protocol run is counted at that length, the time is an upper bound)")
    lines = [f"plan of snlib reproduce (protocol version {protocol['version']}): {study.describe()}",
             f"budget of a protocol run: {budget}; seeds {protocol['seeds']}; rates: {json.dumps(protocol['rates'])}",
             f"records: {plan['records']} (a recorded run is read, not trained)"]
    if not study.protocol.rates:
        lines.append("rates selected on validation: the selection counts its grid and the midpoints that refine "
                     "each recipe's best rate (at most 2 a seed and round), still a minimum (a collapsed run is "
                     "rerun, a best rate at the grid's edge extended); a final run counts as recorded at any rate")
    for row in plan["notebooks"]:
        lines.append(f"{row['notebook']} ({row['plan']}): {row['to_train']} run(s) to train, "
                     f"{row['iterations']} iterations")
        for g in row["runs"]:
            share = f", {g['train_fraction']:.0%} of the identities" if g["train_fraction"] != 1 else ""
            lines.append(f"    {g['recipe']:<14} seeds {g['seeds']}  {g['iterations']} iterations, {g['split']} "
                         f"split{share}: {g['runs']} run(s), {g['recorded']} recorded")
        for g in row["refinements"]:
            lines.append(f"    {g['recipe']:<14} midpoints around its best rate (rates from the grid's results), "
                         f"{g['iterations']} iterations, val split: at most {g['runs']} run(s) to train")
    lines.append(f"step rate here: {plan['images_per_s']:.1f} images/s (the training step of {study.base.model} at "
                 f"{study.base.height}x{study.base.width}; no data loading, no evaluation)")
    lines.append(f"estimated training time: {plan['hours']:.1f} h for "
                 f"{sum(r['iterations'] for r in plan['notebooks'])} iterations of {plan['batch']} images")
    return "\n".join(lines)
