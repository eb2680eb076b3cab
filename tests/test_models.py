"""snlib.models: architectures, ImageNet weights (checked by classifying known photographs), weight files,
checkpoint compatibility, feature extraction."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from snlib import models
from snlib.models import (CheckpointMismatchError, ReIDModel, WeightsUnavailableError, build_model,
                          extract_features, load_model, load_model_weights, model_checkpoint)

# ImageNet class indices: 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso, 968 cup, 504 coffee mug.
CATS = {281, 282, 285}
COFFEE = {967, 968, 504}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _imagenet_batch(*arrays: np.ndarray) -> torch.Tensor:
    """Photographs as the ImageNet evaluation sees them: 224x224 (bicubic), mean/std normalised."""
    tensors = []
    for array in arrays:
        image = Image.fromarray(array).convert("RGB").resize((224, 224), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        tensors.append((x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])
    return torch.stack(tensors)


def _imagenet_logits(model: ReIDModel, images: torch.Tensor) -> torch.Tensor:
    """Backbone of ``model`` + the ImageNet head of the packaged EfficientNet-Lite0 file (``_fc``)."""
    head = models._efficientnet_lite0_state()
    with torch.no_grad():
        return model.eval()(images).embedding @ head["_fc.weight"].T + head["_fc.bias"]


def test_efficientnet_lite0_imagenet_weights_classify_known_photographs():
    skimage_data = pytest.importorskip("skimage.data")
    images = _imagenet_batch(skimage_data.chelsea(), skimage_data.coffee())  # a tabby cat; a cup of espresso
    pretrained = build_model("efficientnet_lite0", pretrained=True)
    assert pretrained.feat_dim == 1280
    top5 = _imagenet_logits(pretrained, images).topk(5, dim=1).indices.tolist()
    assert top5[0][0] in CATS and top5[1][0] in COFFEE, top5  # top-1 correct for both
    # the same architecture untrained does not: the check above can fail
    torch.manual_seed(0)
    untrained = build_model("efficientnet_lite0", pretrained=False)
    top1 = _imagenet_logits(untrained, images).argmax(dim=1).tolist()
    assert top1[0] not in CATS or top1[1] not in COFFEE


@pytest.mark.parametrize("last_stride, grid", [(1, (16, 8)), (2, (8, 4))])
def test_resnet50_last_stride_gives_the_paper_feature_map(last_stride, grid):
    model = build_model("resnet50", pretrained=False, last_stride=last_stride).eval()
    seen = {}
    model.backbone.layer4.register_forward_hook(lambda m, i, out: seen.update(map=out.shape))
    with torch.no_grad():
        feature = model(torch.randn(1, 3, 256, 128)).embedding
    assert seen["map"][1:] == (2048, *grid)
    assert feature.shape == (1, 2048)


def test_resnet50_without_network_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # nothing cached

    def unreachable(address, timeout=None, *args):
        assert timeout is not None and timeout <= 10, "network access must be bounded by a short timeout"
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="weights_path") as info:
        build_model("resnet50", pretrained=True)
    assert time.perf_counter() - start < 30
    assert "resnet50-0676ba61.pth" in str(info.value)  # names the file to fetch


def test_timm_pretrained_without_network_fails_fast(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(WeightsUnavailableError, match="weights_path"):
        build_model("resnet18", pretrained=True)


def test_weights_path_loads_backbone_weights_and_ignores_the_head(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(1)
    reference = resnet50(weights=None)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}  # DDP-style file
    torch.save(wrapped, tmp_path / "r50.pth")
    model = build_model("resnet50", weights_path=tmp_path / "r50.pth")
    loaded = model.backbone.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


def test_weights_of_another_architecture_are_refused_with_the_differences(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch|missing"):
        build_model("resnet50", weights_path=tmp_path / "r18.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("resnet50", weights_path=tmp_path / "absent.pth")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'resnet5O'"):
        build_model("resnet5O", pretrained=False)


def test_forward_modes_bnneck_and_classifier():
    model = build_model("resnet18", pretrained=False, bnneck=True, num_classes=7)
    x = torch.randn(4, 3, 64, 32)
    out = model.train()(x)
    assert out.features.shape == (4, 512) and out.logits.shape == (4, 7)
    model.eval()
    with torch.no_grad():
        neck = model(x).embedding
        raw = model.backbone(x)
    assert torch.allclose(neck, model.bottleneck(raw))  # test feature: after the neck (Bag of Tricks)
    plain = build_model("resnet18", pretrained=False).train()
    assert plain(x).logits is None


def test_checkpoint_roundtrip_and_refusal_of_another_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", pretrained=False, num_classes=5).eval()
    torch.save(model_checkpoint(model), tmp_path / "model.pt")
    restored = load_model(tmp_path / "model.pt").eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(model(x).embedding, restored(x).embedding)
    other = build_model("resnet18", pretrained=False, num_classes=6)
    with pytest.raises(CheckpointMismatchError, match="num_classes: checkpoint 5 vs model 6"):
        load_model_weights(other, torch.load(tmp_path / "model.pt", weights_only=True))
    # same declared architecture, tensors of another model: keys/shapes are compared
    forged = model_checkpoint(build_model("resnet34", pretrained=False))
    forged["model_config"] = dict(model.config)
    with pytest.raises(CheckpointMismatchError, match="unexpected"):
        load_model_weights(model, forged)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointMismatchError, match="not an snlib model file"):
        load_model(tmp_path / "plain.pt")


class _AsymmetricNet(nn.Module):
    """A tiny backbone whose feature changes under a horizontal flip."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3 * 4 * 2, 6))

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, (4, 2)).flatten(1) @ self.weight


def _loader(images, pids, camids, batch_size=3):
    dataset = torch.utils.data.TensorDataset(images, torch.tensor(pids), torch.tensor(camids),
                                             torch.arange(len(pids)))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size)


def test_extract_features_flip_average_normalisation_and_order():
    torch.manual_seed(0)
    model = ReIDModel(_AsymmetricNet(), 6, {"name": "toy"}).train()
    images = torch.randn(7, 3, 16, 8)
    pids, camids = [3, 1, 4, 1, 5, 9, 2], [0, 1, 0, 1, 0, 1, 0]
    features, out_pids, out_camids = extract_features(model, _loader(images, pids, camids), flip=True)
    with torch.no_grad():
        expected = F.normalize(model.backbone(images) + model.backbone(images.flip(3)), dim=1)
    assert torch.allclose(features, expected, atol=1e-6)
    assert out_pids.tolist() == pids and out_camids.tolist() == camids
    assert model.training  # mode restored
    raw, _, _ = extract_features(model, _loader(images, pids, camids), normalize=False)
    with torch.no_grad():
        assert torch.allclose(raw, model.backbone(images), atol=1e-6)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(7))


def test_extract_features_rejects_nan_features():
    model = ReIDModel(_AsymmetricNet(), 6, {"name": "toy"})
    images = torch.randn(4, 3, 16, 8)
    images[2] = float("nan")
    with pytest.raises(FloatingPointError, match="1 of 4 features"):
        extract_features(model, _loader(images, [0, 1, 2, 3], [0, 0, 1, 1]))
