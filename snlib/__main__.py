"""Command line: ``python -m snlib COMMAND`` (also installed as ``snlib``), one of
train, evaluate, runs, verify, reproduce, readme, synth, demo.

Examples::

    python -m snlib train --preset smoke
    python -m snlib train --recipe bot --dry-run
    python -m snlib train --recipe ce --set label_smoothing=0 --set lr=3e-4
    python -m snlib train --preset cpu --dataset market1501 --data-root /data/cuhk03p1 --loss triplet
    python -m snlib train --preset paper --data-root /data/market1501 --set amp=bf16 --set eval_every=10
    torchrun --nproc_per_node=4 -m snlib train --preset paper --set sn_global=true
    python -m snlib evaluate results/cache/<hash> --dataset market1501 --data-root /data/market1501 --rerank
    python -m snlib runs
    python -m snlib runs 3f2a
    python -m snlib runs 3f2a --retrain
    python -m snlib verify --data-root /data/market1501 --decode
    python -m snlib synth --root data
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

#: The run cache when none is given (as settings.cache_root()).
CACHE_HELP = "run cache (default: $SNLIB_CACHE, else results/cache)"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, unless its text says it already (``default: ...``) or the option is
    required."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default is argparse.SUPPRESS
                or action.required):
            return text
        return f"{text} (default: {'off' if action.default is False else '%(default)s'})"


def _data_overrides(dataset: str | None, data_root: str | None, base) -> dict:
    """The ``dataset`` / ``data_root`` changes of the config ``base``: a typed root is read from the current folder
    and its data set detected when not named (``snlib.data.detect_dataset``); another data set than ``base``'s
    starts from empty ``dataset_options`` (as ``snlib.study.open_study``)."""
    from . import settings
    from .data import detect_dataset

    changes = {}
    if data_root is not None:
        changes["data_root"] = str(settings.user_path(data_root))
        dataset = dataset or detect_dataset(changes["data_root"])
    if dataset is not None and dataset != base.dataset:
        changes.update(dataset=dataset, dataset_options={})
    return changes


def _train(args) -> None:
    from .engine import train

    config = _train_config(args)
    if args.dry_run:
        _check_layout(config)
        _dry_run(config, args)
        return
    result = train(config, cache_root=args.cache_root, run_dir=args.run_dir, fresh=args.fresh,
                   progress=not args.no_progress)
    status = "from the cache" if result.from_cache else f"trained in {result.wall_time_s / 60:.1f} min"
    print(f"run {result.run_dir} ({status})")
    print(json.dumps(result.metrics, indent=2))


def _train_config(args):
    """The run's configuration in the project's one order of precedence (``snlib.recipes.run_config``; later
    wins): the preset and its data options, then the recipe's loss and fields (``--recipe``), then the user's
    explicit settings (``--loss``, ``--epochs``, ..., ``--set``): ``--recipe ce --set label_smoothing=0`` trains
    the table's softmax row without label smoothing."""
    from .errors import UsageError
    from .presets import get_preset
    from .recipes import run_config

    explicit = _parse_set(args.set)
    explicit.update({name: getattr(args, name) for name in ("loss", "epochs", "seed", "model", "device")
                     if getattr(args, name) is not None})
    if args.recipe and "loss" in explicit:
        raise UsageError(f"--recipe {args.recipe} sets the loss of its table row; give --recipe or the loss "
                         "(--loss / --set loss=...), not both")
    base = get_preset(args.preset)
    config = base.replace(**_data_overrides(args.dataset, args.data_root, base))
    if not args.recipe:
        return config.replace(**explicit)
    return run_config(config, args.recipe, overrides=explicit)


def _parse_set(items: list[str]) -> dict:
    """``--set FIELD=VALUE`` items as typed ``TrainConfig`` values; ``recipe`` is not one (``--recipe`` is)."""
    from .errors import UsageError
    from .presets import parse_overrides
    from .recipes import RECIPES

    if any(item.partition("=")[0].strip() == "recipe" for item in items):
        raise UsageError("recipe is not a settable field: train a row of the tables with --recipe NAME "
                         f"({', '.join(RECIPES)})")
    return parse_overrides(items)


def _check_layout(config) -> None:
    """A dry run reads no image, but a real data set's folder must have its layout (``DatasetSpec.probe``: names
    only); a generated data set (synthetic) is made by the run itself."""
    from . import settings
    from .data import DataNotFoundError, dataset_spec

    spec = dataset_spec(config.dataset)
    root = settings.repo_path(config.data_root)
    if spec.source is not None and not (root.is_dir() and spec.probe(root)):
        state = "does not exist" if not root.exists() else f"does not have the {spec.name} layout"
        raise DataNotFoundError(f"{root} {state}: expected {spec.layout}; point --data-root at the data set's "
                                "folder (`snlib verify --data-root DIR` names the data set a folder holds)")


def _dry_run(config, args) -> None:
    """Print the resolved configuration, its hash and its run folder; nothing is trained, generated or written."""
    from .presets import config_hash
    from .runs import run_dir_for, run_info

    run_dir = Path(args.run_dir) if args.run_dir else run_dir_for(config, args.cache_root)
    status = run_info(run_dir).status if run_dir.is_dir() else "not trained yet"
    print(json.dumps(config.to_dict(), indent=2, default=str))
    if config.recipe:
        from .recipes import recipe

        print(recipe(config.recipe).describe())
    print(f"hash {config_hash(config)}")
    print(f"run folder {run_dir} ({status})")


def _evaluate(args) -> None:
    from . import settings
    from .data import check_files, load_dataset
    from .engine import evaluate_model, resolve_device
    from .distributed import DistInfo
    from .models import initial_model, load_model
    from .errors import RunNotFoundError, UsageError
    from .presets import get_preset
    from .runs import CONFIG, RunFolder, read_config, run_info

    if (args.checkpoint is None) == (not args.initial):
        raise UsageError("give either a run folder / model.pt or --initial (not both)")
    if args.initial:
        model_file, run_dir = None, None
    else:
        checkpoint = Path(args.checkpoint)
        model_file = RunFolder(checkpoint).model if checkpoint.is_dir() else checkpoint
        run_dir = model_file.parent
        if not model_file.is_file():  # before any data is read or generated
            raise RunNotFoundError(
                f"{checkpoint} holds no model.pt: the run is {run_info(checkpoint).status}; finish it with the "
                "same `snlib train` command, or give a finished run (`snlib runs` lists them)" if checkpoint.is_dir()
                else f"{checkpoint} does not exist: give a run folder or its model.pt (`snlib runs` lists them)")
    # preprocessing (input size, mean/std) from the run that produced the model, else from the preset
    config = read_config(run_dir) if run_dir and (run_dir / CONFIG).is_file() else get_preset(args.preset)
    overrides = {"eval_flip": args.flip, "eval_rerank": args.rerank, "eval_metric": args.metric,
                 **_parse_set(args.set)}
    if args.device:
        overrides["device"] = args.device
    config = config.replace(**overrides)
    device = resolve_device(config, DistInfo())
    if args.initial:  # the preset's model before any re-ID training (ImageNet weights if it is pretrained)
        model = initial_model(config).to(device)
        model_file = f"{config.model} before re-ID training (pretrained={config.pretrained})"
    else:  # read before the data: a damaged model.pt fails at once
        model = load_model(model_file, map_location=device).to(device)
    data = {"dataset": config.dataset, "data_root": str(settings.repo_path(config.data_root)),
            "dataset_options": config.dataset_options,  # e.g. the synthetic set's size
            **_data_overrides(args.dataset, args.data_root, config)}
    dataset = load_dataset(data["dataset"], data["data_root"], **data["dataset_options"])
    check_files(dataset)
    result = evaluate_model(model, dataset.query, dataset.gallery, config, device)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    print(f"{model_file} on {dataset.name} ({len(dataset.query)} queries, {len(dataset.gallery)} gallery images; "
          f"flip={config.eval_flip}, rerank={config.eval_rerank}, metric={config.eval_metric})")
    print(json.dumps(result.as_dict(), indent=2))


def _synth(args) -> None:
    from .data.synthetic import SyntheticConfig, ensure_synthetic
    from .presets import parse_overrides

    from . import settings

    config = SyntheticConfig(**parse_overrides(args.set, SyntheticConfig))
    path = ensure_synthetic(settings.user_path(args.root) if args.root else settings.data_dir(), config)
    print(f"synthetic data set in {path}")


def _verify(args) -> None:
    from . import settings
    from .data import check_files, detect_dataset, load_dataset
    from .data.synthetic import stored_options

    root = settings.user_path(args.data_root)
    name = args.dataset or detect_dataset(root)
    options = stored_options(root) if name == "synthetic" else {}  # the folder as it is: nothing is generated
    dataset = load_dataset(name, root, **options)
    check_files(dataset, decode=args.decode)
    count = len({s.path for split in dataset.splits().values() for s in split})
    print(f"{dataset.name} at {dataset.root}: {count} images, all "
          f"{'decoded' if args.decode else 'present with a readable header'}")


def _runs(args) -> None:
    """The run cache (trained here: models, checkpoints) and the run records (``results/runs/<preset>/``:
    results only, committed), each in its own table; or one run of either."""
    from . import settings
    from .runs import list_runs

    if args.retrain:
        _retrain_record(args.run)
        return
    if args.run:
        _show_run(args.run, args.cache_root)
        return
    root = Path(args.cache_root) if args.cache_root else settings.cache_root()
    runs = list_runs(root)
    print(f"run cache {root}: {len(runs)} run(s) trained here (model and checkpoints; `snlib evaluate` takes them)")
    _print_rows([(info.hash, info.config, info.status, info.metrics) for info in runs])
    for folder, records in _records().items():
        print(f"\nrun records {settings.portable_path(folder)}: {len(records)} (results only, no model; what the "
              "published numbers come from)")
        _print_rows([(path.stem, *_record_row(record)) for path, record in records])


def _records() -> dict:
    """``results/runs/<preset>/``'s record files and their records (None where unreadable), per folder."""
    from . import settings
    from .records import load_record

    folders = {}
    for path in sorted((settings.results_dir() / "runs").glob("*/*.json")):
        try:
            record = load_record(path)
        except (ValueError, KeyError, OSError):
            record = None
        folders.setdefault(path.parent, []).append((path, record))
    return folders


def _record_row(record) -> tuple:
    """``(config, status, metrics)`` of a record (None: unreadable) as ``_print_rows`` shows them."""
    if record is None:
        return None, "unreadable record", {}
    status = f"diverged ({record.split})" if record.diverged else f"recorded ({record.split})"
    return record.config, status, record.metrics or {}


def _print_rows(rows: list[tuple]) -> None:
    """One line per run: ``(hash, config or None, status, metrics)``."""
    if not rows:
        return
    table = [("hash", "dataset", "recipe/loss", "preset", "seed", "status", "rank-1", "mAP")]
    for run_hash, c, status, metrics in rows:
        fields = (c.dataset, c.label, c.preset or "-", str(c.seed)) if c else ("?",) * 4
        scores = tuple(f"{metrics[m]:.1f}" if metrics.get(m) is not None else "-" for m in ("rank1", "mAP"))
        table.append((run_hash, *fields, status, *scores))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _find_record(prefix: str, missing: str) -> tuple:
    """``(path, record or None)`` of the one committed run record whose hash starts with ``prefix``;
    ``RunNotFoundError(missing)`` when none does, ``UsageError`` when several do."""
    from .errors import RunNotFoundError, UsageError

    found = [(path, record) for records in _records().values() for path, record in records
             if path.stem.startswith(prefix)]
    if not found:
        raise RunNotFoundError(missing)
    if len(found) > 1:
        raise UsageError(f"{prefix!r} matches {len(found)} run records ({', '.join(p.stem for p, _ in found)}); "
                         "give more digits of the hash")
    return found[0]


def _show_run(prefix: str, cache_root) -> None:
    """One run of the cache, else one run record, by hash prefix (a cache folder also by path)."""
    from .errors import RunNotFoundError
    from .runs import find_run, run_history, run_info

    try:
        info = run_info(find_run(prefix, cache_root))
    except RunNotFoundError as exc:
        path, record = _find_record(prefix, f"{exc}; no run record in results/runs/ either")
        config, status, metrics = _record_row(record)
        _print_run(path.stem, path, f"{status}: a committed record (results only; no model in the cache)", config,
                   metrics, record.evaluations if record else [], record.history if record else [])
        if record is not None:
            _print_provenance(record)
        return
    _print_run(info.hash, info.run_dir, info.status, info.config, info.metrics, info.evaluations,
               run_history(info.run_dir))


def _retrain_record(prefix: str | None) -> None:
    """``snlib runs HASH --retrain``: :func:`snlib.retrain.retrain_check` of one committed record."""
    from .errors import UsageError
    from .records import load_record
    from .retrain import describe, retrain_check

    if not prefix:
        raise UsageError("--retrain needs the hash (or a prefix) of a committed run record: snlib runs HASH --retrain")
    path, _ = _find_record(prefix, f"no run record {prefix!r} in results/runs/ (snlib runs lists them)")
    record = load_record(path)  # a damaged record: its own message, with the way out
    print(f"retraining run record {path.stem} in a temporary folder (the record and the run cache stay as they are)")
    for line in describe(retrain_check(record, path.parent)):
        print(line)


def _print_run(run_hash, where, status, config, metrics, evaluations, history) -> None:
    """One run: status, the configuration's differences from its preset, final and periodic results, the collapse
    diagnostics of its last iterations."""
    from .runs import diagnostics_lines, preset_differences

    print(f"run {run_hash} ({where})")
    print(f"status: {status}")
    if config is not None:
        changes = preset_differences(config)
        print(f"configuration: preset {config.preset or '(none: the paper recipe)'}"
              + (", changed:" if changes else ", unchanged"))
        for name, (preset_value, value) in changes.items():
            print(f"  {name}: {preset_value!r} -> {value!r}")
    if metrics:
        print("results: " + ", ".join(f"{name} {value:.2f}" for name, value in metrics.items()))
    for row in evaluations:
        print(f"  evaluation after epoch {row['epoch']}: rank1 {row['rank1']:.2f}, mAP {row['mAP']:.2f}")
    for line in diagnostics_lines(history):
        print(line)


def _print_provenance(record) -> None:
    """A record's protocol version and provenance (``snlib.provenance``), where it keeps one."""
    from .provenance import describe

    print(f"protocol version: {record.protocol_version}")
    if record.provenance is None:
        print("provenance: not recorded (a record written before records kept it)")
        return
    print("provenance:")
    for line in describe(record.provenance):
        print(line)


def _reproduce(args) -> None:
    from . import settings
    from .presets import get_preset
    from .reproduce import parse_parameters, run_reproduction

    base = get_preset(args.preset)
    data = {"dataset": base.dataset, "data_root": str(settings.repo_path(base.data_root)),
            **_data_overrides(args.dataset, args.data_root, base)}
    if args.plan:
        from .reproduce_plan import plan_reproduction

        plan_reproduction(args.preset, data["dataset"], data["data_root"], notebooks=args.notebooks or None,
                          extra_parameters=parse_parameters(args.param), records_root=args.records_root)
        return
    out = run_reproduction(args.preset, data["dataset"], data["data_root"], notebooks=args.notebooks or None,
                           out=args.out, name=args.name, update_notebooks=args.update_notebooks,
                           extra_parameters=parse_parameters(args.param), cache_root=args.cache_root,
                           records_root=args.records_root)
    _readme(args, under=out)


def _readme(args, under=None) -> None:
    """README's generated sections (``reporting.update_includes``); after a reproduction, those of its folder. First
    the side-by-side verdicts of each preset folder of ``results/`` (after a reproduction: of its folder's preset
    folder, where that lies in ``results/``; ``findings.save_claims_by_study`` of each ``SIDE_BY_SIDE`` table)."""
    from . import settings
    from .reporting import update_includes
    from .study.findings import SIDE_BY_SIDE, save_claims_by_study

    results = settings.results_dir().resolve()
    folders = sorted(results.glob("*/")) if under is None else [Path(under).resolve().parent]
    compared = [path for folder in folders if folder.resolve().is_relative_to(results)   # not results/paper's link
                for table in SIDE_BY_SIDE if (path := save_claims_by_study(folder, table)) is not None]
    readme = settings.repo_root() / "README.md"
    if readme.is_file():
        for scope in [None] if under is None else [under, *(path.with_suffix(".md") for path in compared)]:
            for path in update_includes(readme, scope):
                print(f"README.md: the section from {path} regenerated")


def _demo(args) -> None:
    from .demo import main as demo_main

    demo_main(getattr(args, "demo_args", None) or [], prog="snlib demo")


#: What ``--dataset`` takes (``snlib.data.DATASETS``; case, ``-`` and ``_`` are ignored).
DATASET_NAMES = "market1501, dukemtmc, cuhk03, cuhk01, msmt17, synthetic"


def _known(names, what: str):
    """An argparse ``type``: a name of ``names``, else an error with a "did you mean" and the known names."""
    from .errors import did_you_mean

    names = list(names)

    def check(name: str) -> str:
        if name not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {name!r}{did_you_mean(name, names)}; known: "
                                             f"{', '.join(names)}")
        return name
    return check


def _add_preset(p, presets: dict, help: str) -> None:
    p.add_argument("--preset", default="cpu", type=_known(presets, "preset"), metavar="{" + ",".join(presets) + "}",
                   help=help)


def _add_data(p, dataset_default: str, root_default: str) -> None:
    p.add_argument("--dataset", help=f"{DATASET_NAMES} (default: {dataset_default})")
    p.add_argument("--data-root", dest="data_root", help=f"the data set's folder (default: {root_default})")


def _add_set(p, help: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=f"{help} (repeatable; default: none)")


def _add_cache_root(p) -> None:
    p.add_argument("--cache-root", dest="cache_root", help=CACHE_HELP)


def _add_train(sub, presets: dict) -> None:
    from .recipes import RECIPES

    t = sub.add_parser("train", help="train a preset, a recipe or a loss (cached by configuration; resumes)")
    _add_preset(t, presets, "cpu: EfficientNet-Lite0 on the synthetic set, minutes a run; smoke: a tiny set, "
                            "seconds (tests); paper: the paper's ResNet-50 recipe, for a GPU (hours)")
    t.add_argument("--recipe", type=_known(RECIPES, "recipe"), metavar="NAME",
                   help="train one row of the tables: the preset with this recipe's loss and fields "
                        "(snlib.recipes), then your --set fields, which win: " + ", ".join(RECIPES)
                        + " (default: none, the preset's loss)")
    t.add_argument("--loss", help='loss spec, e.g. "sn", "sn-paper", "triplet", "ce", "sn+0.5*ce" '
                                  "(default: the preset's, sn)")
    _add_data(t, "detected from --data-root, else the preset's", "the preset's")
    t.add_argument("--epochs", type=int, help="training epochs (default: the preset's: "
                   + ", ".join(f"{name} {c.epochs}" for name, c in presets.items()) + ")")
    t.add_argument("--seed", type=int, help="random seed of the run (default: the preset's, 0)")
    t.add_argument("--model", help="resnet50, efficientnet_lite0 or a timm model name (default: the preset's: "
                   + ", ".join(f"{name} {c.model}" for name, c in presets.items()) + ")")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    _add_set(t, "any TrainConfig field but recipe, e.g. --set lr=3e-4 --set amp=bf16")
    _add_cache_root(t)
    t.add_argument("--run-dir", dest="run_dir",
                   help="train into this folder instead of the cache (default: <cache root>/<config hash>)")
    t.add_argument("--fresh", action="store_true", help="discard a stored run or checkpoint of this configuration")
    t.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    t.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="print the resolved configuration, its hash and run folder, and check a real data set's "
                        "folder layout; train, generate and write nothing")
    t.set_defaults(func=_train)


def _add_evaluate(sub, presets: dict) -> None:
    e = sub.add_parser("evaluate", help="evaluate a trained model on a data set's query/gallery")
    e.add_argument("checkpoint", nargs="?", help="a run folder or its model.pt (default: none; or --initial)")
    e.add_argument("--initial", action="store_true",
                   help="evaluate the preset's model before re-ID training (ImageNet weights where pretrained)")
    _add_data(e, "detected from --data-root, else the run's", "the run's")
    _add_preset(e, presets, "input size / normalisation when the model has no config.json beside it")
    e.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    e.add_argument("--flip", action="store_true", help="average the features of each image and its mirror")
    e.add_argument("--metric", default="euclidean", choices=["euclidean", "sqeuclidean", "cosine"],
                   help="distance of the ranking")
    e.add_argument("--device", help="cpu, cuda, cuda:1 (default: the run's device setting, cuda when available)")
    _add_set(e, "a TrainConfig field of the evaluation, e.g. --set eval_batch_size=64")
    e.add_argument("--json", action="store_true", help="print only the metrics, as JSON")
    e.set_defaults(func=_evaluate)


def _add_runs(sub) -> None:
    u = sub.add_parser("runs", help="list the run cache and the committed run records (status, rank-1, mAP), "
                                    "or show one run")
    u.add_argument("run", nargs="?", help="a run's hash (a prefix is enough) or folder, in the cache or the records: "
                                          "its differences from its preset and its results; a record's also its "
                                          "protocol version and provenance (default: list all)")
    u.add_argument("--retrain", action="store_true",
                   help="train the committed record RUN afresh here (in a temporary folder) and compare it with the "
                        "record: where the training loss departs, the rank-1 / mAP difference, and whether it lies "
                        "inside the recipe's recorded seeds (how to check a reproduction on another machine)")
    _add_cache_root(u)
    u.set_defaults(func=_runs)


def _add_verify(sub) -> None:
    v = sub.add_parser("verify", help="check that every image of a data set is present and readable, before training")
    v.add_argument("--dataset", help=f"{DATASET_NAMES} (default: detected from the folder's layout)")
    v.add_argument("--data-root", dest="data_root", required=True,
                   help="the data set's folder (or a parent of it; required)")
    v.add_argument("--decode", action="store_true",
                   help="decode every image fully (slower; finds truncated files a header read misses)")
    v.set_defaults(func=_verify)


def _add_reproduce(sub, presets: dict) -> None:
    r = sub.add_parser("reproduce", help="run every reproduction notebook (results/<preset>/<dataset>)")
    _add_preset(r, presets, "the preset every notebook runs at")
    _add_data(r, "detected from --data-root, else the preset's", "the preset's, data/")
    r.add_argument("--notebooks", nargs="*", help="name fragments selecting notebooks (default: all)")
    r.add_argument("--name", help="results sub-folder (default: the data set's name), e.g. cuhk03p1")
    r.add_argument("--out", help="output folder (default: results/<preset>/<name>)")
    r.add_argument("--update-notebooks", action="store_true",
                   help="write the executed notebooks back into notebooks/ (how the committed outputs are made)")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a notebook parameter (value read as YAML, e.g. --param seeds=[0]) for every notebook "
                        "that declares it; one no selected notebook declares is an error (repeatable; default: none)")
    r.add_argument("--cache-root", dest="cache_root",
                   help="run cache of the notebooks' kernels (default: $SNLIB_CACHE, else results/cache)")
    r.add_argument("--records-root", dest="records_root",
                   help="run records go to <records-root>/<preset>/ (default $SNLIB_RECORDS or results/runs)")
    r.add_argument("--plan", action="store_true",
                   help="print the runs each notebook would train, how many are recorded, and the estimated time "
                        "from a few timed steps here; train nothing (default: off)")
    r.set_defaults(func=_reproduce)


def _add_small_commands(sub) -> None:
    """readme, synth and demo."""
    m = sub.add_parser("readme", help="regenerate README's generated sections (the verdict tables from claims.md)")
    m.set_defaults(func=_readme)
    s = sub.add_parser("synth", help="generate the synthetic data set (idempotent)")
    s.add_argument("--root", help="parent folder; the set goes to <root>/synthetic-<tag of its configuration> "
                                  "(default: the repository's data/)")
    _add_set(s, "SyntheticConfig fields, e.g. --set num_train_ids=50")
    s.set_defaults(func=_synth)
    d = sub.add_parser("demo", help="the SN loss on a toy batch, explained (its options: snlib demo -h)",
                       add_help=False)
    d.set_defaults(func=_demo)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one ``_add_<command>`` per command; every option's help says its default."""
    from . import __version__
    from .presets import PRESETS

    parser = argparse.ArgumentParser(prog="snlib", description=__doc__.replace("``", "").replace("::", ":"),
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"snlib {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an expected error too "
                                                             "(default: off, or on with SNLIB_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    presets = {name: PRESETS[name]() for name in sorted(PRESETS)}
    _add_train(sub, presets)
    _add_evaluate(sub, presets)
    _add_runs(sub)
    _add_verify(sub)
    _add_reproduce(sub, presets)
    _add_small_commands(sub)
    for name, command in sub.choices.items():
        command.formatter_class = _HelpFormatter
        if name != "demo":  # snlib.demo parses its own options
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="as snlib --debug (default: off)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the command line; an expected error (``SnlibError``) prints one line and exits with status 2."""
    from . import settings
    from .errors import SnlibError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":
        args.demo_args = extra  # snlib.demo parses its own options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.func(args)
    except SnlibError as exc:  # an expected error (bad input, missing data, damaged file): its message is enough
        if args.debug or settings.debug():
            raise
        parser.exit(2, f"snlib {args.command}: error: {exc}\n")


if __name__ == "__main__":
    main()
