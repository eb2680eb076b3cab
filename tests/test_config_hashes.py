"""The run hash of every preset and loss, and the loss each configuration builds, pinned as computed before the
registries of issue 11: a refactoring that changed them would orphan every cached run."""
import pytest

from snlib.losses import loss_from_config
from snlib.presets import config_hash, get_preset

HASHES = {
    ("cpu", "sn"): "4314b739422dea13", ("cpu", "sn-paper"): "944fb7a1927b0155", ("cpu", "sep"): "bbc7e5f5c468bac4",
    ("cpu", "triplet"): "ca59c6046b09ef98", ("cpu", "triplet-soft"): "88a8db052fe4e7db",
    ("cpu", "contrastive"): "8a5e06cf133ab382", ("cpu", "center"): "b475e31ce42110f7",
    ("cpu", "ce"): "43283115c8c50417", ("cpu", "sn+0.5*ce"): "e5d54f26db726bc6",
    ("cpu", "triplet+ce"): "d3c2296622cdf643",
    ("paper", "sn"): "73164d24c344bbb2", ("paper", "sn-paper"): "f45a3edd1cc62796",
    ("paper", "sep"): "b54c13812dc5f03e", ("paper", "triplet"): "dececd42eb003c62",
    ("paper", "triplet-soft"): "c5946bfa2409b1d3", ("paper", "contrastive"): "d74e1fed230173d8",
    ("paper", "center"): "4135804919195b98", ("paper", "ce"): "4702dedb4feb90e6",
    ("paper", "sn+0.5*ce"): "9d5fdf4aa9064c0b", ("paper", "triplet+ce"): "721cec870128ee6c",
    ("smoke", "sn"): "71ac756b34473a16", ("smoke", "sn-paper"): "434374125cd4c87e",
    ("smoke", "sep"): "54ca2d051ad96846", ("smoke", "triplet"): "0317f3401f6e44b2",
    ("smoke", "triplet-soft"): "134b4d502e5942d7", ("smoke", "contrastive"): "b41ba275eba3a9a5",
    ("smoke", "center"): "c91dc98574c69c38", ("smoke", "ce"): "c58ac3c8f4d70cc9",
    ("smoke", "sn+0.5*ce"): "a6b9c23929b86fc6", ("smoke", "triplet+ce"): "d06811aec8b6c74d",
}


@pytest.mark.parametrize("preset, loss", sorted(HASHES))
def test_preset_hashes_are_unchanged(preset, loss):
    assert config_hash(get_preset(preset, loss=loss)) == HASHES[preset, loss]


def test_hashes_with_loss_options_are_unchanged():
    config = get_preset("cpu", loss="sn", sn_k=5, sn_alpha=30.0, sn_lambda=0.0, seed=3, lr=2e-4)
    assert config_hash(config) == "5654ecf159b39821"
    config = get_preset("smoke", loss="triplet", triplet_margin=0.5, label_smoothing=0.1, model="resnet50",
                        loss_options={"normalize": True})
    assert config_hash(config) == "bd54a60e6d881f69"


BUILT = [
    ("sn", {}, "(sn): SupportNeighborLoss(k=10, alpha=50.0, lam=0.1, squeeze='released', normalize=True)"),
    ("sn-paper", dict(sn_k=5, sn_alpha=30.0, sn_lambda=0.2),
     "(sn-paper): SupportNeighborLoss(k=5, alpha=30.0, lam=0.2, squeeze='paper', normalize=True)"),
    ("triplet+0.5*ce", dict(triplet_margin=0.5, label_smoothing=0.1),
     "(triplet): TripletLoss(margin=0.5, soft=False, normalize=False)\n"
     "    (ce): CrossEntropyLoss(label_smoothing=0.1)"),
    ("center+contrastive", dict(loss_options={"margin": 0.7}),
     "(center): CenterLoss(num_classes=4, feat_dim=8)\n"
     "    (contrastive): ContrastiveLoss(margin=0.7, normalize=True)"),
    ("sep+triplet-soft", dict(loss_options={"normalize": True}),
     "(sep): SupportNeighborLoss(k=10, alpha=50.0, lam=0.1, squeeze='none', normalize=True)\n"
     "    (triplet-soft): TripletLoss(margin=0.3, soft=True, normalize=True)"),
]


@pytest.mark.parametrize("loss, changes, terms", BUILT)
def test_config_builds_the_same_loss(loss, changes, terms):
    built = loss_from_config(get_preset("smoke", loss=loss, **changes), num_classes=4, feat_dim=8)
    assert repr(built) == (f"CombinedLoss(\n  spec={loss!r}\n  (terms): ModuleDict(\n    {terms}\n  )\n)")
