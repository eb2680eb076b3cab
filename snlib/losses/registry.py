"""Loss terms by name: ``@register_loss`` records a class under its names with the ``TrainConfig`` fields it
takes; :func:`snlib.losses.build_loss` and ``loss_from_config`` build from this registry."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LossTerm:
    """A loss term known by name: its class, the constructor arguments the name fixes (``"sn-paper"``:
    ``squeeze="paper"``) and the ``TrainConfig`` fields it takes (``field -> constructor argument``)."""
    cls: type[nn.Module]
    fixed: dict
    config_fields: dict


#: Term name -> :class:`LossTerm`, in registration order (``@register_loss``).
LOSSES: dict[str, LossTerm] = {}


def register_loss(names: dict[str, dict], config_fields: dict[str, str] | None = None):
    """Class decorator: register a loss under each of ``names`` (``name -> arguments the name fixes``);
    ``config_fields`` maps the ``TrainConfig`` fields it takes to its constructor arguments (``sn_k -> k``).
    A class whose constructor takes ``num_classes`` and ``feat_dim`` receives them from ``build_loss``; one with
    ``takes_logits = True`` is called on the classifier logits instead of the features."""
    def register(cls):
        for name, fixed in names.items():
            if name in LOSSES:
                raise ValueError(f"loss name {name!r} is registered twice ({LOSSES[name].cls.__name__}, "
                                 f"{cls.__name__})")
            LOSSES[name] = LossTerm(cls, dict(fixed), dict(config_fields or {}))
        return cls
    return register
