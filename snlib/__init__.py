"""snlib: reproducible companion of *Support Neighbor Loss for Person Re-Identification* (ACM MM 2018).

Where things live:
    snlib.losses      the SN loss, the baselines (softmax, batch-hard triplet, contrastive, center) and the losses
                      after SN (circle, multi-similarity, SupCon, ArcFace, CosFace), one file each, by name
    snlib.evaluation  re-ID metrics (CMC, mAP in two AP conventions, mINP), distances, re-ranking
    snlib.data        data sets (real layouts and the synthetic default, one spec each), PK sampler, transforms
    snlib.models      ResNet-50 (the paper's) and timm backbones by name, feature extraction
    snlib.engine      the training loop and checkpoints; snlib.trunk: a frozen trunk and its cache
    snlib.presets     TrainConfig, the presets and their protocol sizes; snlib.recipes: each loss as its
                      literature trains it, and the one order of precedence of a run's configuration
    snlib.records     run records (results/runs/); snlib.statistics: paired intervals and the verdict rule
    snlib.study       what the notebooks share: plans, the protocol, claims, tables, figures
    snlib.reproduce   the papermill driver behind make reproduce
    snlib.runs        the run store: a run folder's files, the run cache
    snlib.integrations.pml  the SN loss as a pytorch-metric-learning loss (extra snlib[pml])
    snlib.paper       the paper's published numbers (package data)
"""

__version__ = "0.1.0"
