"""Multi-similarity loss with its miner (Wang et al., CVPR 2019), pytorch-metric-learning's."""
from __future__ import annotations

from .base import check_number
from .pml_base import PMLLoss, check_positive, pml_modules
from .registry import register_loss


@register_loss({"ms": {}})
class MultiSimilarityLoss(PMLLoss):
    """Multi-similarity loss with its pair mining (Wang et al., CVPR 2019), PML's ``MultiSimilarityLoss`` on the
    pairs of PML's ``MultiSimilarityMiner``. Cosine similarities S (the features L2-normalised); the miner keeps the
    positives with ``S_ip - epsilon < max_n S_in`` and the negatives with ``S_in + epsilon > min_p S_ip``; per
    anchor, over the kept pairs::

        1/alpha log(1 + sum_p exp(-alpha (S_ip - base))) + 1/beta log(1 + sum_n exp(beta (S_in - base)))

    averaged over all anchors (one without kept pairs counts 0). ``scale_pos`` (alpha) = 2, ``scale_neg`` (beta)
    = 50, ``base`` (lambda) = 0.5, ``epsilon`` = 0.1: PML's defaults; the authors' code (research-ms-loss) has
    alpha 2, lambda 0.5, epsilon 0.1 and beta 40 in its default configuration, 50 in PML's."""

    def __init__(self, scale_pos: float = 2.0, scale_neg: float = 50.0, base: float = 0.5,
                 epsilon: float = 0.1) -> None:
        check_positive(scale_pos=scale_pos, scale_neg=scale_neg)
        check_number("epsilon", epsilon, 0.0, strict=False)
        check_number("base", base, -1.0, strict=False, what=" (a cosine similarity)")
        losses, miners = pml_modules()
        super().__init__(losses.MultiSimilarityLoss(alpha=float(scale_pos), beta=float(scale_neg), base=float(base)),
                         miners.MultiSimilarityMiner(epsilon=float(epsilon)))
        self.scale_pos, self.scale_neg, self.base, self.epsilon = (float(v) for v in (scale_pos, scale_neg, base,
                                                                                      epsilon))

    def extra_repr(self) -> str:
        return f"scale_pos={self.scale_pos}, scale_neg={self.scale_neg}, base={self.base}, epsilon={self.epsilon}"
