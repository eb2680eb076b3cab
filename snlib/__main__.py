"""Command line: ``python -m snlib train|evaluate|synth|reproduce|demo`` (also installed as ``snlib``).

Examples::

    python -m snlib train --preset smoke
    python -m snlib train --preset cpu --dataset market1501 --data-root /data/cuhk03p1 --loss triplet
    python -m snlib train --preset paper --data-root /data/market1501 --set amp=bf16 --set eval_every=10
    torchrun --nproc_per_node=4 -m snlib train --preset paper --set sn_global=true
    python -m snlib evaluate results/cache/<hash> --dataset market1501 --data-root /data/market1501 --rerank
    python -m snlib synth --root data/synthetic
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _train(args) -> None:
    from .engine import train
    from .presets import get_preset, parse_overrides

    overrides = parse_overrides(args.set)
    for name in ("loss", "dataset", "data_root", "epochs", "seed", "model", "device"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    config = get_preset(args.preset, **overrides)
    result = train(config, cache_root=args.cache_root, run_dir=args.run_dir, fresh=args.fresh,
                   progress=not args.no_progress)
    status = "from the cache" if result.from_cache else f"trained in {result.wall_time_s / 60:.1f} min"
    print(f"run {result.run_dir} ({status})")
    print(json.dumps(result.metrics, indent=2))


def _evaluate(args) -> None:
    import torch

    from .data import load_dataset
    from .engine import evaluate_model, resolve_device
    from .distributed import DistInfo
    from .models import build_model, load_model
    from .presets import TrainConfig, get_preset, parse_overrides

    if (args.checkpoint is None) == (not args.initial):
        raise SystemExit("snlib evaluate: give either a run folder / model.pt or --initial (not both)")
    if args.initial:
        model_file, config_file = None, None
    else:
        checkpoint = Path(args.checkpoint)
        model_file = checkpoint / "model.pt" if checkpoint.is_dir() else checkpoint
        config_file = model_file.parent / "config.json"
    # preprocessing (input size, mean/std) from the run that produced the model, else from the preset
    config = TrainConfig.from_dict(json.loads(config_file.read_text())) if config_file and config_file.is_file() \
        else get_preset(args.preset)
    overrides = {"eval_flip": args.flip, "eval_rerank": args.rerank, "eval_metric": args.metric,
                 **parse_overrides(args.set)}
    if args.device:
        overrides["device"] = args.device
    config = config.replace(**overrides)
    name = args.dataset or config.dataset
    options = config.dataset_options if name == config.dataset else {}  # e.g. the synthetic set's size
    dataset = load_dataset(name, args.data_root or config.data_root, **options)
    device = resolve_device(config, DistInfo())
    if args.initial:  # the preset's model before any re-ID training (ImageNet weights if it is pretrained)
        torch.manual_seed(config.seed)
        model = build_model(config.model, pretrained=config.pretrained, last_stride=config.last_stride,
                            bnneck=config.bnneck, weights_path=config.weights_path).to(device)
        model_file = f"{config.model} before re-ID training (pretrained={config.pretrained})"
    else:
        model = load_model(model_file, map_location=device).to(device)
    result = evaluate_model(model, dataset.query, dataset.gallery, config, device)
    print(f"{model_file} on {dataset.name} ({len(dataset.query)} queries, {len(dataset.gallery)} gallery images; "
          f"flip={config.eval_flip}, rerank={config.eval_rerank}, metric={config.eval_metric})")
    print(json.dumps(result.as_dict(), indent=2))


def _synth(args) -> None:
    from .data.synthetic import SyntheticConfig, ensure_synthetic
    from .presets import parse_overrides

    config = SyntheticConfig(**parse_overrides(args.set, SyntheticConfig))
    path = ensure_synthetic(args.root, config)
    print(f"synthetic data set in {path}")


def _reproduce(args) -> None:
    from .reproduce import parse_parameters, run_reproduction

    run_reproduction(args.preset, args.dataset, args.data_root, notebooks=args.notebooks or None, out=args.out,
                     name=args.name, update_notebooks=args.update_notebooks,
                     extra_parameters=parse_parameters(args.param))


def _demo(args) -> None:
    from .demo import main as demo_main

    demo_main(getattr(args, "demo_args", None) or [])


def build_parser() -> argparse.ArgumentParser:
    from .presets import PRESETS

    parser = argparse.ArgumentParser(prog="snlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a preset (cached by configuration; resumes an interrupted run)")
    t.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    t.add_argument("--loss", help='loss spec, e.g. "sn", "sn-paper", "triplet", "ce", "sn+0.5*ce"')
    t.add_argument("--dataset", help="market1501, dukemtmc, cuhk03, cuhk01, msmt17, synthetic")
    t.add_argument("--data-root", dest="data_root")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--model", help="resnet50, efficientnet_lite0 or a timm model name")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any TrainConfig field, e.g. --set lr=3e-4 --set amp=bf16 (repeatable)")
    t.add_argument("--cache-root", dest="cache_root", help="run cache (default $SNLIB_CACHE or results/cache)")
    t.add_argument("--run-dir", dest="run_dir", help="train into this folder instead of the cache")
    t.add_argument("--fresh", action="store_true", help="discard a stored run or checkpoint of this configuration")
    t.add_argument("--no-progress", dest="no_progress", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="evaluate a trained model on a data set's query/gallery")
    e.add_argument("checkpoint", nargs="?", help="a run folder or its model.pt")
    e.add_argument("--initial", action="store_true",
                   help="evaluate the preset's model before re-ID training (ImageNet weights where pretrained)")
    e.add_argument("--dataset")
    e.add_argument("--data-root", dest="data_root")
    e.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                   help="input size / normalisation when the model has no config.json beside it")
    e.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    e.add_argument("--flip", action="store_true", help="average the features of each image and its mirror")
    e.add_argument("--metric", default="euclidean", choices=["euclidean", "sqeuclidean", "cosine"])
    e.add_argument("--device")
    e.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    e.set_defaults(func=_evaluate)

    s = sub.add_parser("synth", help="generate the synthetic data set (idempotent)")
    s.add_argument("--root", default="data/synthetic")
    s.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="SyntheticConfig fields")
    s.set_defaults(func=_synth)

    r = sub.add_parser("reproduce", help="run every reproduction notebook (results/<preset>/<dataset>)")
    r.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    r.add_argument("--dataset", default="synthetic")
    r.add_argument("--data-root", dest="data_root", default="data/synthetic")
    r.add_argument("--notebooks", nargs="*", help="name fragments selecting notebooks")
    r.add_argument("--name", help="results sub-folder (default: the data set's name), e.g. cuhk03p1")
    r.add_argument("--out", help="output folder (default results/<preset>/<name>)")
    r.add_argument("--update-notebooks", action="store_true",
                   help="write the executed notebooks back into notebooks/ (how the committed outputs are made)")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a notebook parameter for every notebook, value read as YAML, e.g. --param seeds=[0]")
    r.set_defaults(func=_reproduce)

    d = sub.add_parser("demo", help="the SN loss on a toy batch, explained (its options: snlib demo -h)",
                       add_help=False)
    d.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "demo":
        args.demo_args = extra  # snlib.demo parses its own options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.func(args)


if __name__ == "__main__":
    main()
