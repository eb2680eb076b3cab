"""Image transforms; the defaults are the paper's (256 x 128, horizontal flip only, its normalisation)."""
from __future__ import annotations

from torchvision import transforms as T

#: Normalisation of the paper's released code.
PAPER_MEAN = (0.486, 0.459, 0.408)
PAPER_STD = (0.229, 0.224, 0.225)
#: The usual ImageNet statistics (torchvision, timm, torchreid).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_step(height: int, width: int) -> T.Resize:
    """The resize of every pipeline (PIL bilinear); :mod:`snlib.data.decoded` applies it once per image."""
    return T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR)


def build_transforms(height: int = 256, width: int = 128, train: bool = True, flip: bool = True,
                     pad_crop: bool = False, random_erasing: bool = False, mean=PAPER_MEAN, std=PAPER_STD,
                     padding: int = 10, erasing_p: float = 0.5) -> T.Compose:
    """PIL image -> normalised float tensor ``(3, height, width)``.

    Train: resize, then optionally horizontal flip (p = 0.5), pad-and-crop (``padding`` pixels,
    zero fill, random crop back to size), and after normalisation random erasing (``erasing_p``,
    area 2-40 %, aspect 0.3-3.3, random values: Zhong et al., AAAI 2020). Test (``train=False``): resize and normalise only.
    """
    steps = [resize_step(height, width)]
    if train and flip:
        steps.append(T.RandomHorizontalFlip())
    if train and pad_crop:
        steps += [T.Pad(padding), T.RandomCrop((height, width))]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if train and random_erasing:
        steps.append(T.RandomErasing(p=erasing_p, scale=(0.02, 0.4), value="random"))
    return T.Compose(steps)
