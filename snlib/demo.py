"""A short printed demo of the SN loss on a toy batch: ``python -m snlib.demo [--k 5] [--seed 0]``.

The batch (:func:`snlib.study.geometry.toy_batch`; importing it loads that module alone, not the study stack)
holds 4 identities x 4 images around centres on a circle in
the plane, plus one identity seen once (it has no positive, so it does not count). For each squeeze reading of
docs/paper.md it prints the loss and its parts (``SupportNeighborLoss.last``), then the support neighbours of one
anchor.
"""
from __future__ import annotations

import argparse

from .losses import SQUEEZE_READINGS, SupportNeighborLoss, support_neighbors
from .study.geometry import toy_batch

PARTS = ("loss", "separation", "squeeze", "pos_dist", "neg_dist", "knn_without_positive", "no_positive",
         "support_pos", "support_neg", "anchors")


def main(argv: list[str] | None = None, prog: str = "python -m snlib.demo") -> None:
    parser = argparse.ArgumentParser(prog=prog, description="A short printed demo of the SN loss on a toy batch.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--k", type=int, default=5, help="support neighbours per anchor (paper: 10 for N=128)")
    parser.add_argument("--alpha", type=float, default=50.0, help="softmax scale of the SN loss (paper: 50)")
    parser.add_argument("--lam", type=float, default=0.1, help="weight of the squeeze term (paper: 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the toy batch")
    args = parser.parse_args(argv)

    features, labels = toy_batch(num_ids=4, per_id=4, seed=args.seed, lone=True)
    print(f"Toy batch: {len(labels)} images, identities {sorted(set(labels.tolist()))} "
          f"(4 images each, the last one alone); k={args.k}, alpha={args.alpha}, lambda={args.lam}\n")
    parts = {}
    for squeeze in SQUEEZE_READINGS:
        loss_fn = SupportNeighborLoss(k=args.k, alpha=args.alpha, lam=args.lam, squeeze=squeeze)
        loss_fn(features, labels)
        parts[squeeze] = loss_fn.last
    print("SupportNeighborLoss(...).last for each squeeze reading")
    print(f"{'':22s}" + "".join(f"{squeeze:>11s}" for squeeze in SQUEEZE_READINGS))
    for part in PARTS:
        print(f"{part:22s}" + "".join(f"{parts[squeeze][part]:11.4f}" for squeeze in SQUEEZE_READINGS))

    sets = support_neighbors(features, labels, k=args.k, alpha=args.alpha, squeeze="released")
    anchor = 0
    distances = sets.distances[anchor].detach()
    print(f"\nAnchor {anchor} (identity {labels[anchor].item()}): threshold t = {sets.threshold[anchor]:.4f}")
    for j in distances.argsort().tolist():
        if j == anchor:
            continue
        role = "S+" if sets.positive[anchor, j] else "S-" if sets.negative[anchor, j] else "  "
        same = "same identity" if labels[j] == labels[anchor] else ""
        print(f"  {role}  sample {j:2d}  identity {labels[j].item()}  D = {distances[j]:.4f}  {same}")
    print(f"  L_sep = {sets.separation[anchor]:.4g}, L_sqz (released) = {sets.squeeze[anchor]:.4g}")


if __name__ == "__main__":
    main()
