"""build_loss / CombinedLoss, and the errors every loss gives on bad input or bad options."""
import math

import pytest
import torch

from snlib.losses import (
    LOSS_NAMES, CenterLoss, CombinedLoss, ContrastiveLoss, CrossEntropyLoss, SupportNeighborLoss, TripletLoss,
    build_loss, support_neighbors,
)


def _batch(num_ids=8, images=4, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_ids * images, dim, generator=generator), torch.arange(num_ids).repeat_interleave(images)


# ---- build_loss ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, cls, fixed", [
    ("sn", SupportNeighborLoss, {"squeeze": "released"}),
    ("sn-paper", SupportNeighborLoss, {"squeeze": "paper"}),
    ("sn-neighbors", SupportNeighborLoss, {"squeeze": "neighbors"}),
    ("sn-released", SupportNeighborLoss, {"squeeze": "released"}),
    ("sep", SupportNeighborLoss, {"squeeze": "none"}),
    ("sn-none", SupportNeighborLoss, {"squeeze": "none"}),
    ("sn-pair", SupportNeighborLoss, {"squeeze": "pair"}),
    ("pair", SupportNeighborLoss, {"squeeze": "pair"}),
    ("triplet", TripletLoss, {"soft": False}),
    ("triplet-soft", TripletLoss, {"soft": True}),
    ("contrastive", ContrastiveLoss, {}),
    ("center", CenterLoss, {"num_classes": 8, "feat_dim": 16}),
    ("ce", CrossEntropyLoss, {}),
])
def test_every_name_builds_its_term(name, cls, fixed):
    loss = build_loss(name, num_classes=8, feat_dim=16)
    (module,) = loss.terms.values()
    assert type(module) is cls and loss.weights == {name: 1.0}
    assert all(getattr(module, key) == value for key, value in fixed.items())
    assert loss.needs_logits == (name == "ce")
    assert name in LOSS_NAMES


def test_weighted_sum_and_last():
    features, labels = _batch()
    logits = torch.randn(len(labels), 8)
    loss = build_loss(" sn + 0.5*ce + 2e-3*center ", num_classes=8, feat_dim=16, k=5, label_smoothing=0.1)
    sn, ce, center = loss.terms["sn"], loss.terms["ce"], loss.terms["center"]
    assert (sn.k, ce.label_smoothing, loss.weights) == (5, 0.1, {"sn": 1.0, "ce": 0.5, "center": 2e-3})
    assert {id(p) for p in loss.parameters()} == {id(center.centers)}
    total = loss(features, labels, logits=logits)
    center_term = 0.5 * (features - center.centers[labels]).pow(2).sum(dim=1).mean()
    expected = (SupportNeighborLoss(k=5)(features, labels) + 0.5 * CrossEntropyLoss(0.1)(logits, labels)
                + 2e-3 * center_term)
    torch.testing.assert_close(total, expected)
    assert loss.last["loss"] == pytest.approx(total.item())
    assert loss.last["sn"] == pytest.approx(sn.last["loss"])
    assert loss.last["sn/separation"] == sn.last["separation"] and "ce/accuracy" in loss.last
    assert loss.needs_logits


def test_options_reach_every_term_that_takes_them():
    loss = build_loss("triplet+contrastive+sn", margin=0.4, normalize=False)
    assert loss.terms["triplet"].margin == loss.terms["contrastive"].margin == 0.4
    assert not any(module.normalize for module in loss.terms.values())


@pytest.mark.parametrize("spec, message", [
    ("", "non-empty"), ("   ", "non-empty"), ("snn", "unknown loss 'snn'"), ("sn+", "bad term ''"),
    ("+sn", "bad term ''"), ("x*sn", "bad weight 'x'"), ("0*sn", "must be finite and > 0"),
    ("-1*sn", "must be finite and > 0; got -1"), ("inf*sn", "must be finite"), ("sn*2", "bad term"),
    ("sn+0.5*sn", "appears twice"),
    ("center", "needs num_classes and feat_dim"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace("+", r"\+")):
        build_loss(spec)


def test_bad_options():
    with pytest.raises(ValueError, match=r"\['kk'\] are taken by no term"):
        build_loss("sn", kk=3)
    with pytest.raises(ValueError, match="label_smoothing"):
        build_loss("triplet", label_smoothing=0.1)
    with pytest.raises(ValueError, match="contradicts the loss name 'sn-paper'"):
        build_loss("sn-paper", squeeze="released")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        build_loss("sn", k=0)


def test_cross_entropy_term_needs_logits():
    features, labels = _batch()
    with pytest.raises(ValueError, match="cross-entropy term: build the model with a classifier"):
        build_loss("sn+ce")(features, labels)
    with pytest.raises(ValueError, match="at least one term"):
        CombinedLoss({})


# ---- bad input -----------------------------------------------------------------------------------------------

ALL_LOSSES = [SupportNeighborLoss(), TripletLoss(), ContrastiveLoss(), CenterLoss(8, 16), CrossEntropyLoss()]
LOSS_IDS = ["sn", "triplet", "contrastive", "center", "ce"]


@pytest.mark.parametrize("loss_fn", ALL_LOSSES, ids=LOSS_IDS)
def test_bad_batches_are_named(loss_fn):
    features, labels = _batch(dim=16 if not isinstance(loss_fn, CrossEntropyLoss) else 8)
    with pytest.raises(ValueError, match=r"has 32 rows but labels has 31 entries"):
        loss_fn(features, labels[:-1])
    with pytest.raises(ValueError, match=r"2-D tensor \(batch, dim\); got shape \(32,\)"):
        loss_fn(features[:, 0], labels)
    with pytest.raises(ValueError, match="pool the feature map"):
        loss_fn(features[:, :, None, None], labels)
    with pytest.raises(ValueError, match="1-D tensor"):
        loss_fn(features, labels[:, None])
    with pytest.raises(TypeError, match="integer identity ids"):
        loss_fn(features, labels.float())
    with pytest.raises(TypeError, match="floating-point"):
        loss_fn(features.long(), labels)
    with pytest.raises(ValueError, match="empty batch"):
        loss_fn(features[:0], labels[:0])
    broken = features.clone()
    broken[3, 1], broken[7, 0] = math.nan, math.inf
    with pytest.raises(ValueError, match=r"NaN or inf in 2 of 32 rows \(first: \[3, 7\]\)"):
        loss_fn(broken, labels)


def test_class_losses_check_their_labels():
    features, labels = _batch()
    with pytest.raises(ValueError, match=r"class indices in \[0, 8\); got labels in \[0, 9\]"):
        CenterLoss(8, 16)(features, torch.where(labels == 7, 9, labels))
    with pytest.raises(ValueError, match="built for feat_dim=12"):
        CenterLoss(8, 12)(features, labels)
    with pytest.raises(ValueError, match=r"logits of 5 classes"):
        CrossEntropyLoss()(torch.randn(32, 5), labels)


@pytest.mark.parametrize("make, message", [
    (lambda: SupportNeighborLoss(k=0), "k must be a positive integer"),
    (lambda: SupportNeighborLoss(k=2.5), "k must be a positive integer"),
    (lambda: SupportNeighborLoss(alpha=0), r"alpha \(softmax scale, paper: 50\) must be a finite number > 0"),
    (lambda: SupportNeighborLoss(alpha=math.nan), r"alpha \(softmax scale, paper: 50\) must be a finite number > 0"),
    (lambda: SupportNeighborLoss(lam=-1), "lam .* must be a finite number >= 0; got -1"),
    (lambda: SupportNeighborLoss(squeeze="max"), "squeeze must be one of"),
    (lambda: support_neighbors(torch.randn(4, 3), torch.arange(4), squeeze="max"), "squeeze must be one of"),
    (lambda: TripletLoss(margin=-0.1), "margin must be a finite number >= 0"),
    (lambda: ContrastiveLoss(margin=0), "margin must be a finite number > 0; got 0"),
    (lambda: CenterLoss(0, 5), "num_classes"),
    (lambda: CrossEntropyLoss(label_smoothing=1.0), "label_smoothing"),
])
def test_bad_options_of_each_loss(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_demo_prints_the_parts_of_every_reading(capsys):
    from snlib.demo import PARTS, main

    main(["--k", "3"])
    out = capsys.readouterr().out
    assert all(reading in out for reading in ("paper", "neighbors", "released", "none", "pair"))
    assert all(part in out for part in PARTS) and "S+" in out


# ---- the registry ----------------------------------------------------------------------------------------------

def test_registered_config_fields_are_train_config_fields():
    import dataclasses

    from snlib.losses import LOSSES
    from snlib.presets import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert LOSS_NAMES == tuple(LOSSES)
    for name, term in LOSSES.items():
        assert set(term.config_fields) <= fields, name


def test_a_registered_loss_is_built_from_a_config(request):
    from snlib import losses
    from snlib.presets import get_preset

    request.addfinalizer(lambda: losses.LOSSES.pop("scaled-triplet", None))   # the registry as it was

    @losses.register_loss({"scaled-triplet": {}}, config_fields={"triplet_margin": "margin", "sn_alpha": "scale"})
    class ScaledTriplet(TripletLoss):
        def __init__(self, margin: float = 0.3, scale: float = 1.0) -> None:
            super().__init__(margin=margin)
            self.scale = scale

    built = losses.loss_from_config(get_preset("smoke", loss="scaled-triplet+ce", triplet_margin=0.7,
                                               sn_alpha=3.0, label_smoothing=0.2), num_classes=4, feat_dim=8)
    term = built.terms["scaled-triplet"]
    assert (type(term), term.margin, term.scale, built.terms["ce"].label_smoothing) == (ScaledTriplet, 0.7, 3.0, 0.2)
    assert built.needs_logits
    with pytest.raises(ValueError, match="did you mean 'scaled-triplet'"):   # known names include the new one
        losses.build_loss("scaled-triplt")
    with pytest.raises(ValueError, match="registered twice"):
        losses.register_loss({"sn": {}})(TripletLoss)
