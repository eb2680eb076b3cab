"""TrainConfig.validate(): every field is checked when the configuration is made, before any work, and a bad
value raises a ConfigError (a ValueError) naming the field and what it allows."""
from __future__ import annotations

import pytest

from snlib.errors import ConfigError, SnlibError
from snlib.presets import get_preset, parse_overrides


@pytest.mark.parametrize("field, value, allowed", [
    ("eval_metric", "foo", "euclidean, sqeuclidean, cosine"),
    ("mean", (1.0, 2.0), "3 values"),
    ("std", (0.2, 0.0, 0.2), "each > 0"),
    ("std", (0.2, 0.2), "3 values"),
    ("betas", (0.9,), "2 values"),
    ("betas", (0.9, 1.0), "[0, 1)"),
    ("loss", "sn+foo", "unknown loss 'foo'"),
    ("loss", "sn+sn", "appears twice"),
    ("loss_options", {"margin_typo": 1}, "taken by no term"),
    ("model", "resnet5O", "timm model name"),
    ("last_stride", 3, "1 (the paper's) or 2"),
    ("height", 8, ">= 16"),
    ("width", 15, ">= 16"),
    ("sn_k", 0, ">= 1"),
    ("sn_alpha", 0.0, "> 0"),
    ("sn_lambda", -0.1, ">= 0"),
    ("triplet_margin", -1.0, ">= 0"),
    ("label_smoothing", 1.0, "[0, 1)"),
    ("eval_every", -1, ">= 0"),
    ("warmup_epochs", -1, ">= 0"),
    ("warmup_factor", 0.0, "(0, 1]"),
    ("checkpoint_every", 0, ">= 1"),
    ("num_workers", -1, ">= 0"),
    ("eval_batch_size", 0, ">= 1"),
    ("weight_decay", -1e-4, ">= 0"),
    ("lr", 0.0, "> 0"),
    ("lr", float("nan"), "finite"),
    ("seed", -1, "[0, 2**32)"),
    ("epochs", 2.5, "an integer"),
    ("flip", "false", "true or false"),           # a string would be truthy
    ("mean", "0.5,0.5,0.5", "a list of finite numbers"),
    ("decay_start_epoch", "10", "a number or None"),
    ("device", "gpu", "cpu, cuda or cuda:N"),
    ("preset", "fast", "smoke, cpu, paper or empty"),
    ("loss", 3, "a string"),
])
def test_a_bad_field_value_is_a_config_error_naming_the_field(field, value, allowed):
    explicit = {"normalization": "explicit"} if field in ("mean", "std") else {}   # smoke: the backbone's
    with pytest.raises(ConfigError) as info:
        get_preset("smoke", **explicit, **{field: value})
    message = str(info.value)
    assert f"{field}={value!r}" in message and allowed in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, SnlibError)


def test_good_values_pass():
    config = get_preset("smoke", model="resnet18", last_stride=2, betas=[0.5, 0.99], mean=[0.5, 0.5, 0.5],
                        normalization="explicit", loss="sn-paper+0.5*ce", label_smoothing=0.1, eval_metric="cosine",
                        device="cuda:1")
    assert config.betas == (0.5, 0.99) and config.mean == (0.5, 0.5, 0.5)  # lists read as tuples
    for name in ("smoke", "cpu", "paper"):
        get_preset(name)


def test_every_wrong_field_is_reported_at_once():
    with pytest.raises(ConfigError, match=r"height=8 .*eval_metric='foo'"):
        get_preset("smoke", height=8, eval_metric="foo")


def test_override_and_preset_errors_are_config_errors():
    for call in (lambda: parse_overrides(["epochs=ten"]), lambda: parse_overrides(["epochs"]),
                 lambda: get_preset("gpu"), lambda: get_preset("smoke", lrr=1)):
        with pytest.raises(ConfigError):
            call()
    # a wrong length parses, then validation names the field (torchvision used to fail on it later)
    with pytest.raises(ConfigError, match=r"mean=\(1.0, 2.0\) must hold 3 values"):
        get_preset("smoke", **parse_overrides(["normalization=explicit", "mean=1,2"]))


def test_a_mean_or_std_the_backbone_normalisation_would_replace_is_refused():
    """The cpu and smoke presets take the backbone's normalisation: a mean / std of one's own needs
    normalization=explicit (it is not dropped silently); the backbone's own values, as config.json holds them, pass."""
    with pytest.raises(ConfigError, match=r"mean=\[0.4, 0.4, 0.4\]: normalization='backbone' takes the backbone's"):
        get_preset("cpu", mean=[0.4, 0.4, 0.4])
    with pytest.raises(ConfigError, match=r"std=\(0.2, 0.2, 0.2\).*set normalization=explicit"):
        get_preset("smoke", **parse_overrides(["std=0.2,0.2,0.2"]))
    cpu = get_preset("cpu")
    assert get_preset("cpu", mean=[0.5, 0.5, 0.5], std=(0.5, 0.5, 0.5)) == cpu
    assert get_preset("cpu", normalization="explicit", mean=[0.4, 0.4, 0.4]).mean == (0.4, 0.4, 0.4)
    assert cpu.from_dict(cpu.to_dict()) == cpu


def test_validation_checks_the_loss_through_the_registry_without_building_it(monkeypatch):
    """A configuration names its loss by the registry (names, weights, options); no loss module is built."""
    import functools

    from snlib import losses

    def refused(init):
        @functools.wraps(init)          # keeps the signature the registry reads
        def no_building(self, *args, **kwargs):
            raise AssertionError("a loss was built to validate a configuration")
        return no_building

    for term in losses.LOSSES.values():
        monkeypatch.setattr(term.cls, "__init__", refused(term.cls.__init__))
    config = get_preset("smoke", loss="sn+0.5*ce+center", loss_options={"normalize": True})
    assert config.loss == "sn+0.5*ce+center"
    with pytest.raises(ConfigError, match="taken by no term"):
        get_preset("smoke", loss="ce", loss_options={"margin": 1.0})
