"""Loss specs: ``build_loss("sn+0.5*ce")`` parses weighted terms by name (the registry) into a
:class:`CombinedLoss`; ``loss_from_config`` builds a run's loss with the ``TrainConfig`` fields each term takes."""
from __future__ import annotations

import inspect
import math
import re

from torch import Tensor, nn

from ..errors import did_you_mean
from .registry import LOSSES

_TERM_PATTERN = re.compile(r"^(?:(?P<weight>[^*]+)\*)?(?P<name>[a-z-]+)$")


class CombinedLoss(nn.Module):
    """Weighted sum of named loss terms: ``forward(features, labels, logits=None)``.

    ``terms`` maps a name to ``(weight, module)``; a term with ``takes_logits`` (``"ce"``) receives ``logits``,
    the others ``features``. ``last`` holds each term's value under its name, each term's own parts as ``"name/part"``
    and the weighted total as ``"loss"``. ``needs_logits`` tells whether the model needs a classifier.
    """

    def __init__(self, terms: dict[str, tuple[float, nn.Module]], spec: str | None = None) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CombinedLoss needs at least one term")
        self.terms = nn.ModuleDict({name: module for name, (_, module) in terms.items()})
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}
        self.spec = spec or "+".join(f"{w:g}*{n}" for n, w in self.weights.items())
        self.last: dict[str, float] = {}

    @property
    def needs_logits(self) -> bool:
        return any(getattr(m, "takes_logits", False) for m in self.terms.values())

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"

    def forward(self, features: Tensor, labels: Tensor, logits: Tensor | None = None) -> Tensor:
        total, last = None, {}
        for name, module in self.terms.items():
            if getattr(module, "takes_logits", False):
                if logits is None:
                    raise ValueError(f"the loss {self.spec!r} has a cross-entropy term: build the model with a "
                                     "classifier (num_classes) and pass its logits")
                value = module(logits, labels)
            else:
                value = module(features, labels)
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
            last[name] = module.last["loss"]
            last.update({f"{name}/{part}": v for part, v in module.last.items() if part != "loss"})
        self.last = {"loss": float(total.detach()), **last}
        return total


def _parse_spec(spec: str) -> list[tuple[str, float]]:
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"loss spec must be a non-empty string like 'sn' or 'triplet+0.5*ce'; got {spec!r}")
    terms = []
    for raw in spec.replace(" ", "").lower().split("+"):
        match = _TERM_PATTERN.match(raw)
        if not raw or match is None:
            raise ValueError(f"bad term {raw!r} in loss spec {spec!r}: write terms as 'name' or 'weight*name' "
                             "joined by '+'")
        name, weight_text = match["name"], match["weight"]
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}{did_you_mean(name, tuple(LOSSES))}; known: "
                             f"{', '.join(LOSSES)}")
        try:
            weight = 1.0 if weight_text is None else float(weight_text)
        except ValueError:
            raise ValueError(f"bad weight {weight_text!r} for {name!r} in loss spec {spec!r}") from None
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"weight of {name!r} in {spec!r} must be finite and > 0; got {weight_text}")
        if name in dict(terms):
            raise ValueError(f"loss {name!r} appears twice in {spec!r}: give it one weight")
        terms.append((name, weight))
    return terms


def loss_arguments(spec: str, num_classes: int | None = None, feat_dim: int | None = None,
                   **options) -> dict[str, tuple[float, type, dict]]:
    """``{term name: (weight, class, constructor arguments)}`` of a loss spec (:func:`build_loss`), every name and
    option checked, nothing built: what ``TrainConfig`` validation calls (``snlib.presets``). Without
    ``num_classes`` / ``feat_dim`` a term that needs them (``center``) is checked with placeholders."""
    parsed = _parse_spec(spec)
    used = set()
    terms = {}
    for name, weight in parsed:
        cls, fixed = LOSSES[name].cls, LOSSES[name].fixed
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        kwargs = {key: value for key, value in options.items() if key in accepted}
        for key, value in fixed.items():
            if key in kwargs and kwargs[key] != value:
                raise ValueError(f"option {key}={kwargs[key]!r} contradicts the loss name {name!r} "
                                 f"({key}={value!r}); pick the term by name instead")
        kwargs.update(fixed)
        if {"num_classes", "feat_dim"} <= accepted:
            kwargs.update(num_classes=num_classes, feat_dim=feat_dim)
        used.update(kwargs)
        terms[name] = (weight, cls, kwargs)
    unused = set(options) - used
    if unused:
        raise ValueError(f"option(s) {sorted(unused)} are taken by no term of {spec!r}")
    return terms


def build_loss(spec: str, num_classes: int | None = None, feat_dim: int | None = None,
               **options) -> CombinedLoss:
    """Build a :class:`CombinedLoss` from a spec such as ``"sn"``, ``"sn+ce"``, ``"triplet+0.5*ce"``.

    Terms are joined by ``+``, each optionally weighted ``"w*name"``; names: ``sn`` (released squeeze),
    ``sn-paper``, ``sn-neighbors``, ``sn-released``, ``sn-pair`` / ``pair``, ``sn-none`` / ``sep`` (no squeeze),
    ``triplet``, ``triplet-soft``, ``contrastive``, ``center`` (needs num_classes and feat_dim), ``ce``; the
    later losses of pytorch-metric-learning (the ``pml`` extra): ``circle``, ``ms``, ``supcon``, ``arcface`` and
    ``cosface`` (these two need num_classes and feat_dim).
    ``options`` go to every term whose constructor takes them (``k``, ``alpha``, ``lam``, ``normalize``,
    ``margin``, ``label_smoothing``, ``gamma``, ``scale``, ...); an option no term takes, or one that contradicts a
    term's name, is an error.
    """
    terms = {}
    for name, (weight, cls, kwargs) in loss_arguments(spec, num_classes, feat_dim, **options).items():
        if "num_classes" in kwargs and (num_classes is None or feat_dim is None):
            raise ValueError(f"the {name!r} term of {spec!r} needs num_classes and feat_dim")
        terms[name] = (weight, cls(**kwargs))
    return CombinedLoss(terms, spec=spec)


def config_options(spec: str, config) -> dict:
    """The ``build_loss`` options of ``spec`` from a ``TrainConfig``: ``config.loss_options``, overridden by the
    fields each term of ``spec`` registered (``sn_k -> k``, ``triplet_margin -> margin``, ...)."""
    options = dict(config.loss_options)
    for name, _ in _parse_spec(spec):
        options.update({arg: getattr(config, field) for field, arg in LOSSES[name].config_fields.items()})
    return options


def loss_from_config(config, num_classes: int, feat_dim: int) -> CombinedLoss:
    """The loss of a training run: ``build_loss(config.loss, ...)`` with :func:`config_options`."""
    return build_loss(config.loss, num_classes=num_classes, feat_dim=feat_dim, **config_options(config.loss, config))
