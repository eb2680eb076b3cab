"""The training loop: one loop for every loss of ``snlib.losses``, on the CPU, one GPU or many (torchrun).

``train(config)`` runs a :class:`~snlib.presets.TrainConfig` to the end and returns a
:class:`~snlib.runs.RunResult`. Runs are cached in ``<cache root>/<config hash>/`` (the layout: ``snlib.runs``):
``config.json``, the checkpoint of an unfinished run and, once finished, ``model.pt`` (weights + architecture),
``history.csv`` (one row per iteration) and ``result.json`` (final metrics, periodic evaluations, timings). Calling
``train`` again with the same configuration returns the stored run; calling it after an interruption resumes from
the last checkpoint and ends with the same weights and history as an uninterrupted run (RNG states are
checkpointed with the weights; timings excepted).

Learning rate (the released code; ``ep`` 1-based, ``s`` = decay start, ``T`` = epochs)::

    lr(ep) = base                                          ep < s
    lr(ep) = base * final_factor ** ((ep + 1 - s) / (T + 1 - s))   ep >= s

times an optional linear warm-up over the first ``warmup_epochs`` (per iteration). With an iteration budget
(``iterations`` = T > 0, the protocol's), the same shape per iteration ``t`` (0-based), ``s = round(76/150 T)``::

    lr(t) = base * final_factor ** max(0, (t + 1 - s) / (T - s))

times a linear warm-up from ``warmup_factor`` over the first ``warmup_iterations``; evaluations every
``eval_every_iterations`` only (the epoch-based ``eval_every`` does not apply); the run stops after exactly T
iterations (the last epoch may be cut short). ``warmup_share`` lengthens either warm-up to that share of the run's
iterations when it is longer (``warmup_length``; Bag of Tricks warms up over 10 of 120 epochs). An evaluation
restores the random generators: how often a run evaluates does not change what it trains.

A run trains on ``run_dataset(config)``: the data set, split for validation when ``split="val"``
(``snlib.data.validation_split``) and cut to ``train_fraction`` of its training identities. With ``train_from``
the backbone's stages before it are frozen, and with ``trunk_cache`` training and evaluation start from their
cached output (``snlib.trunk``).
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed, trunk
from .collapse import batch_geometry
from .data import PKSampler, ReIDDataset, Sample, build_transforms, check_files, load_dataset, train_share, validation_split
from .data.decoded import build_dataset
from .errors import ConfigError, SnlibError
from .evaluation import RankResult, evaluate_features
from .losses import loss_from_config
from .models import (CheckpointMismatchError, build_model, extract_features, load_model_weights, model_checkpoint,
                     model_options)
from .precision import resolve_precision
from .presets import PAPER_DECAY_START, PAPER_EPOCHS, TrainConfig, config_hash
from .records import per_query
from .runs import RunFolder, RunResult, run_dir_for
from . import settings

#: History columns that measure the machine, not the computation (they differ between identical runs).
TIMING_KEYS = ("images_per_s", "time_s")


class TrainingDivergedError(SnlibError, FloatingPointError):
    """The loss or the features became NaN/inf; the last checkpoint is intact. ``reason``: what and when, without
    the machine's paths (what a run record keeps)."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


# ------------------------------------------------------------------------------------- small utilities


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); with ``deterministic``, deterministic cuDNN kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict:
    """The state of every random generator a training step may draw from (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    python = state["python"]
    random.setstate((state["python_version"], tuple(python[:-1]), python[-1]))
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(config: TrainConfig, epoch: int, iteration: int = 0, iters_per_epoch: int = 1) -> float:
    """Learning-rate multiplier at 0-based ``epoch`` and 0-based ``iteration`` inside it (module docstring)."""
    if config.iterations:
        return _iteration_lr_factor(config, epoch * iters_per_epoch + iteration)
    ep, start, total = epoch + 1, config.decay_start, config.epochs
    factor = 1.0
    if ep >= start:
        factor = config.final_lr_factor ** ((ep + 1 - start) / (total + 1 - start))
    return factor * _warmup(config, epoch * iters_per_epoch + iteration, warmup_length(config, iters_per_epoch))


def warmup_length(config: TrainConfig, iters_per_epoch: int = 1) -> int:
    """Iterations of the linear warm-up: ``warmup_iterations`` (iteration budget) or ``warmup_epochs`` (epoch
    budget), or ``round(warmup_share * the run's iterations)`` when that is longer."""
    if config.iterations:
        fixed, total = config.warmup_iterations, config.iterations
    else:
        fixed, total = config.warmup_epochs * iters_per_epoch, config.epochs * iters_per_epoch
    return max(fixed, round(config.warmup_share * total))


def _warmup(config: TrainConfig, t: int, length: int) -> float:
    """The warm-up multiplier at 0-based iteration ``t``: linear from ``warmup_factor`` to 1 over ``length``."""
    if t + 1 < length:
        return config.warmup_factor + (1 - config.warmup_factor) * (t + 1) / length
    return 1.0


def _iteration_lr_factor(config: TrainConfig, t: int) -> float:
    """The multiplier at 0-based iteration ``t`` of an iteration budget (module docstring)."""
    total = config.iterations
    start = min(total - 1, round(PAPER_DECAY_START / PAPER_EPOCHS * total))
    factor = config.final_lr_factor ** max(0.0, (t + 1 - start) / (total - start))
    return factor * _warmup(config, t, warmup_length(config))


def run_dataset(config: TrainConfig) -> ReIDDataset:
    """What ``config`` trains and is scored on: its data set, split for validation (``split="val"``), on
    ``train_fraction`` of the training identities."""
    dataset = load_dataset(config.dataset, settings.repo_path(config.data_root), **config.dataset_options)
    if config.split == "val":
        dataset = validation_split(dataset)
    return train_share(dataset, config.train_fraction)


def resolve_device(config: TrainConfig, info: distributed.DistInfo) -> torch.device:
    if config.device:
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


# --------------------------------------------------------------------------------------- data and eval


def num_workers(config: TrainConfig) -> int:
    """Data-loading processes: ``config.num_workers``, at most one per CPU core."""
    return min(config.num_workers, os.cpu_count() or 1)


def eval_transform(config: TrainConfig):
    """The test-time transform of ``config``: resize and normalise (no augmentation)."""
    return build_transforms(config.height, config.width, train=False, mean=config.mean, std=config.std)


def eval_loader(samples: list[Sample], config: TrainConfig, device: torch.device) -> torch.utils.data.DataLoader:
    """Test batches of ``samples`` (resize and normalise), from the decoded cache of ``config.decoded_cache``."""
    dataset = build_dataset(samples, eval_transform(config), config.height, config.width, config.decoded_cache,
                            desc="test images")
    return torch.utils.data.DataLoader(dataset, batch_size=config.eval_batch_size, shuffle=False,
                                       num_workers=num_workers(config), pin_memory=device.type == "cuda")


def test_features(model: nn.Module, samples: list[Sample], config: TrainConfig, device: torch.device,
                  desc: str = "features", training_layout: bool = True) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``(features, pids, camids)`` of ``samples`` under ``model`` (``snlib.models.extract_features``:
    L2-normalised, flip-averaged under ``config.eval_flip``): from the trunk cache where ``config`` has one
    (``snlib.trunk``), else from the images, in the layout and precision training uses on ``device``
    (``resolve_precision``; ``training_layout=False``: NCHW float32)."""
    precision = resolve_precision(config, device, training=False)
    if trunk.cached(config):
        features = trunk.test_features(model, samples, config, device, precision, num_workers(config), desc)
        if features is not None:
            return features
    options = dict(channels_last=precision.channels_last, amp_dtype=precision.dtype) if training_layout else {}
    return extract_features(model, eval_loader(samples, config, device), device, flip=config.eval_flip, desc=desc,
                            **options)


def evaluate_model(model: nn.Module, query: list[Sample], gallery: list[Sample], config: TrainConfig,
                   device: str | torch.device | None = None) -> RankResult:
    """Query-vs-gallery evaluation as the paper: L2-normalised features, ``config.eval_metric`` distance,
    optional flip averaging and re-ranking (Market-1501 protocol, ``snlib.evaluation.evaluate_features``), in the
    layout and precision training uses on ``device`` (:func:`test_features`; features in float32)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    qf, q_pids, q_camids = test_features(model, query, config, device, desc="query features")
    gf, g_pids, g_camids = test_features(model, gallery, config, device, desc="gallery features")
    return evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=config.eval_metric, normalize=True,
                             rerank=config.eval_rerank)


# ------------------------------------------------------------------------------------------- training


def train(config: TrainConfig, cache_root: str | Path | None = None, run_dir: str | Path | None = None,
          fresh: bool = False, progress: bool = True,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> RunResult:
    """Train ``config`` to the end (or return it from the cache); see the module docstring.

    ``run_dir`` overrides ``<cache_root>/<config hash>``; ``fresh`` discards a stored run or checkpoint first.
    ``on_epoch_end(epoch, state)`` is called after each epoch's checkpoint (1-based epoch; ``state`` holds
    ``history`` and ``evaluations``). Under torchrun every process calls ``train`` (DDP).
    """
    info = distributed.init_distributed()
    folder = RunFolder(Path(run_dir) if run_dir else run_dir_for(config, cache_root))
    created = False  # by this call: removed again when training fails before its first checkpoint
    if info.is_main:
        if fresh:
            folder.discard()
        created = folder.create()
    distributed.barrier()
    if folder.finished:
        return RunResult.load(folder.path)
    try:
        with folder.lock() if info.is_main else nullcontext():
            if info.is_main:
                folder.write_config(config)
            trainer = _Trainer(config, folder, info, progress)
            if info.is_main:
                print(trainer.data_line(), flush=True)
            result = trainer.fit(on_epoch_end)
    except BaseException:
        if created:
            folder.remove_if_empty()
        raise
    distributed.barrier()
    return result if info.is_main else RunResult.load(folder.path)


class _Trainer:
    """State of one training run (model, loss, optimiser, loaders) and the loop over epochs."""

    def __init__(self, config: TrainConfig, folder: RunFolder, info: distributed.DistInfo, progress: bool):
        self.config, self.folder, self.info, self.progress = config, folder, info, progress
        self.device = resolve_device(config, info)
        self.precision = resolve_precision(config, self.device)  # fp16 on a CPU is refused here, before any work
        if info.enabled and config.p % info.world_size:
            raise ConfigError(f"p={config.p} identities per batch cannot be split over {info.world_size} processes")
        seed_everything(config.seed + info.rank, config.deterministic)
        self.dataset = run_dataset(config)
        check_files(self.dataset)  # a missing or unreadable image fails here, not at the final evaluation
        num_classes = self.dataset.num_train_pids
        model = build_model(**model_options(config))
        if config.train_from:
            trunk.freeze(model, config.train_from)
        self.loss = loss_from_config(config, num_classes, model.feat_dim).to(self.device)
        if self.loss.needs_logits:
            model.add_classifier(num_classes)
        if info.enabled and config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        if self.precision.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        params = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        if list(self.loss.parameters()):
            params.append({"params": list(self.loss.parameters())})
        self.optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.amp == "fp16")
        self.criterion = self.loss
        if info.enabled and config.sn_global:
            self.criterion = distributed.GlobalBatchLoss(self.loss)
        self.sampler = PKSampler([s.pid for s in self.dataset.train], p=config.p, k=config.k, seed=config.seed,
                                 rank=info.rank, world_size=info.world_size)
        transform = build_transforms(config.height, config.width, train=True, flip=config.flip,
                                     pad_crop=config.pad_crop, random_erasing=config.random_erasing,
                                     mean=config.mean, std=config.std)
        self.batch_size = config.p * config.k // info.world_size
        self.iters_per_epoch = len(self.sampler) // self.batch_size
        if self.iters_per_epoch < 1:
            raise ConfigError(f"the training set has too few identities ({num_classes}) for p={config.p}")
        self.total_iterations = config.iterations or config.epochs * self.iters_per_epoch
        self.num_epochs = -(-self.total_iterations // self.iters_per_epoch)
        self.train_set = None  # with a trunk cache: the trunk's outputs (None: the cache fits nowhere)
        if trunk.cached(config):
            self.train_set = trunk.training_set(self.model, self.dataset.train, config, self.device, self.precision,
                                                num_workers(config))
        from_trunk = self.train_set is not None
        if not from_trunk:
            self.train_set = build_dataset(self.dataset.train, transform, config.height, config.width,
                                           config.decoded_cache, desc="training images")
        self.net = trunk.FromTrunk(self.model, config.train_from) if from_trunk else self.model
        if info.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.epoch, self.history, self.evaluations, self.wall_time = 0, [], [], 0.0

    def data_line(self) -> str:
        """``data: <name> at <root> (<counts>)``: what the run trains on, printed before training."""
        ds, split = self.dataset, ("validation " if self.config.split == "val" else "")
        return (f"data: {ds.name} at {settings.portable_path(ds.root)} ({ds.num_train_pids} train ids, "
                f"{ds.num_train_imgs} train images, {ds.num_query_imgs} {split}queries, {ds.num_gallery_imgs} "
                f"{split}gallery images)")

    # ----------------------------------------------------------------------------------- checkpoints

    def _state(self) -> dict:
        return {"config_hash": config_hash(self.config),
                "model_config": dict(self.model.config), "state_dict": self.model.state_dict(),
                "loss_state": self.loss.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "history": self.history,
                "evaluations": self.evaluations, "wall_time_s": self.wall_time,
                "rng": distributed.gather_objects(rng_state()), "world_size": self.info.world_size}

    def save_checkpoint(self) -> None:
        state = self._state()  # every rank takes part in gathering the RNG states
        if self.info.is_main:
            self.folder.write_checkpoint(state)

    def resume(self) -> bool:
        state = self.folder.read_checkpoint()
        if state is None:
            return False
        path = self.folder.checkpoint
        if state.get("config_hash") != config_hash(self.config):
            raise CheckpointMismatchError(
                f"{path} belongs to another configuration (hash {state.get('config_hash')} vs "
                f"{config_hash(self.config)}); use a fresh run folder or --fresh (train(..., fresh=True))")
        load_model_weights(self.model, state, source=str(path))
        self.loss.load_state_dict(state["loss_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.history = state["epoch"], state["history"]
        self.evaluations, self.wall_time = state["evaluations"], state["wall_time_s"]
        if state["world_size"] == self.info.world_size:
            set_rng_state(state["rng"][self.info.rank])
        else:  # the run continues correctly, only not bit-identical to an uninterrupted one
            seed_everything(self.config.seed + 1000 * self.epoch + self.info.rank, self.config.deterministic)
        return True

    # ----------------------------------------------------------------------------------------- loop

    def fit(self, on_epoch_end) -> RunResult:
        config = self.config
        resumed = self.resume()
        epochs = self.num_epochs
        if resumed and self.info.is_main:
            print(f"resumed from epoch {self.epoch} of {epochs} ({self.folder.checkpoint})", flush=True)
        lines = self.progress and self.info.is_main and settings.batch_mode()  # a line per epoch instead of a bar
        bar = tqdm(total=self.total_iterations, initial=len(self.history), desc=f"train {config.label}",
                   disable=not (self.progress and self.info.is_main) or lines, mininterval=2.0, dynamic_ncols=True)
        name = (f"{settings.BATCH_LINE_PREFIX}training {config.label} seed {config.seed} "
                f"({config_hash(config)})")
        if lines:
            print(f"{name}: {epochs} epochs, {self.total_iterations} iterations", flush=True)
        while self.epoch < epochs:
            start = time.perf_counter()
            self._train_epoch(bar)
            self.epoch += 1
            by_epoch = config.eval_every and not config.iterations   # an iteration budget has its own schedule
            if by_epoch and self.epoch % config.eval_every == 0 and self.epoch < epochs:
                self._evaluate_test()
            self.wall_time += time.perf_counter() - start
            if self.epoch % config.checkpoint_every == 0 or self.epoch == epochs:
                self.save_checkpoint()
            if on_epoch_end is not None:
                on_epoch_end(self.epoch, {"history": self.history, "evaluations": self.evaluations})
            if lines:
                print(f"{name}: epoch {self.epoch}/{epochs}, loss {self.loss.last['loss']:.4f}, "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
        bar.close()
        return self._finish(resumed)

    def train_loader(self) -> torch.utils.data.DataLoader:
        """The current epoch's loader of training batches (PK sampling, augmentation)."""
        config = self.config
        self.sampler.set_epoch(self.epoch)
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
            collate_fn=self.train_set.collate if isinstance(self.train_set, trunk.TrunkDataset) else None,
            num_workers=num_workers(config), pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(config.seed * 100_003 + self.epoch * 101 + self.info.rank))

    def _train_epoch(self, bar) -> None:
        config = self.config
        loader = self.train_loader()
        self.net.train()
        tick = time.perf_counter()
        for it, (images, pids, *_) in enumerate(loader):
            if len(self.history) >= self.total_iterations:
                break
            lr = config.lr * lr_factor(config, self.epoch, it, self.iters_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._step(images, pids, it)
            now = time.perf_counter()
            self.history.append({"epoch": self.epoch + 1, "iteration": len(self.history) + 1, "lr": lr,
                                 **{k: float(v) for k, v in self.loss.last.items()}, **self.geometry,
                                 "images_per_s": config.p * config.k / (now - tick), "time_s": now - tick})
            tick = now
            bar.update(1)
            bar.set_postfix(epoch=self.epoch + 1, loss=f"{self.loss.last['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
            done = len(self.history)
            if config.eval_every_iterations and done % config.eval_every_iterations == 0 and done < self.total_iterations:
                self._evaluate_test()
                self.net.train()

    def _step(self, images: torch.Tensor, pids: torch.Tensor, it: int) -> None:
        """One optimisation step on a batch (forward under autocast, loss in float32, backward, Adam); ``images``
        are the trunk's outputs where the run has a trunk cache."""
        images = images.to(self.device, non_blocking=True)
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        pids = pids.to(self.device, non_blocking=True)
        with self.precision.autocast(self.device):
            out = self.net(images)
        features = out.features.float()
        logits = out.logits.float() if out.logits is not None else None
        loss = self.criterion(features, pids, logits=logits) if torch.isfinite(features).all() else None
        if loss is None or not torch.isfinite(loss):
            what = "features are NaN/inf" if loss is None else f"loss is {loss.item()} ({self.loss.last})"
            reason = f"{what} at epoch {self.epoch + 1}, iteration {it + 1}"
            raise TrainingDivergedError(
                f"{reason}: training diverged; the last checkpoint ({self.folder.checkpoint}) is intact: lower lr, "
                "or use amp='off'", reason)
        self.geometry = batch_geometry(features.detach(), pids)  # the history's collapse diagnostics
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.info.enabled and not isinstance(self.criterion, distributed.GlobalBatchLoss):
            distributed.average_gradients(self.loss.parameters())
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _evaluate_test(self) -> dict:
        """Query-vs-gallery metrics of the current model (main process), logged in ``evaluations``. The random
        generators are restored afterwards (an evaluation loader draws its base seed from torch's), so how often a
        run evaluates does not change the network it trains."""
        metrics = {}
        if self.info.is_main:
            state = rng_state()
            self.last_rank = evaluate_model(self.model, self.dataset.query, self.dataset.gallery, self.config,
                                            self.device)
            set_rng_state(state)
            metrics = self.last_rank.as_dict()
            self.evaluations.append({"epoch": self.epoch, "iteration": len(self.history), **metrics})
        distributed.barrier()
        return metrics

    def _finish(self, resumed: bool) -> RunResult:
        start = time.perf_counter()
        metrics = self._evaluate_test()
        eval_time = time.perf_counter() - start
        query = self.dataset.query
        queries = per_query(self.last_rank, [s.pid for s in query], [s.camid for s in query]) if self.info.is_main else {}
        result = RunResult(config=self.config, run_dir=self.folder.path, history=self.history, per_query=queries,
                           evaluations=self.evaluations, metrics=metrics, wall_time_s=self.wall_time,
                           extra={"resumed": resumed, "device": str(self.device), "eval_time_s": eval_time,
                                  "world_size": self.info.world_size, "iters_per_epoch": self.iters_per_epoch,
                                  **self.precision.as_dict()})
        if self.info.is_main:
            summary = {"config": self.config.to_dict(), "config_hash": config_hash(self.config),
                       "dataset": self.dataset.name, "data_root": settings.portable_path(self.dataset.root),
                       "split": self.config.split, "metrics": metrics, "evaluations": self.evaluations,
                       "wall_time_s": self.wall_time, "extra": result.extra, "per_query": queries}
            self.folder.finish(model_checkpoint(self.model), self.history, summary)
        return result
