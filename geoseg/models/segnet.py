"""SegNet: an encoder-decoder that upsamples with the encoder's max-pooling indices.

Each encoder stage is ``convs`` blocks of 3x3 convolution, batch norm and ReLU
followed by a 2x2 max pooling that remembers where each maximum came from. The
decoder mirrors the encoder: each stage unpools with the stored indices (so
boundaries land exactly where the encoder found them), then convolves. Depth
and width are configurable so that a small SegNet fits in a few megabytes.

Inputs whose height or width is not a multiple of ``2 ** depth`` are padded by
reflection inside :meth:`SegNet.forward` and the logits cropped back, so any
tile size works.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from geoseg.errors import ModelError


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _stage(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """``convs`` conv blocks, the first changing the channel count."""
    blocks = [_conv_block(in_channels, out_channels)]
    blocks += [_conv_block(out_channels, out_channels) for _ in range(convs - 1)]
    return nn.Sequential(*blocks)


class SegNet(nn.Module):
    """SegNet with ``len(widths)`` pooling stages.

    Parameters
    ----------
    in_channels
        Input bands.
    num_classes
        Output classes (logit channels).
    widths
        Channels of each encoder stage, shallow to deep.
    convs
        Convolution blocks per stage.
    """

    def __init__(
        self, in_channels: int, num_classes: int, widths: tuple[int, ...], convs: int
    ) -> None:
        super().__init__()
        self.depth = len(widths)
        self.encoder = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoder.append(_stage(previous, width, convs))
            previous = width
        self.decoder = nn.ModuleList()
        for index in reversed(range(self.depth)):
            out_channels = widths[index - 1] if index > 0 else widths[0]
            self.decoder.append(_stage(widths[index], out_channels, convs))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)`` for images ``(N, in_channels, H, W)``."""
        height, width = images.shape[-2:]
        multiple = 2**self.depth
        pad_rows = (-height) % multiple
        pad_cols = (-width) % multiple
        features = images
        if pad_rows or pad_cols:
            mode = "reflect" if pad_rows < height and pad_cols < width else "replicate"
            features = functional.pad(features, (0, pad_cols, 0, pad_rows), mode=mode)
        indices: list[torch.Tensor] = []
        sizes: list[torch.Size] = []
        for stage in self.encoder:
            features = stage(features)
            sizes.append(features.shape)
            features, index = functional.max_pool2d(
                features, kernel_size=2, stride=2, return_indices=True
            )
            indices.append(index)
        for stage, index, size in zip(
            self.decoder, reversed(indices), reversed(sizes), strict=True
        ):
            features = functional.max_unpool2d(
                features, index, kernel_size=(2, 2), stride=(2, 2), output_size=size[-2:]
            )
            features = stage(features)
        logits: torch.Tensor = self.head(features)
        return logits[..., :height, :width]


def build_segnet(
    *,
    in_channels: int,
    num_classes: int,
    widths: list[int] | tuple[int, ...] = (32, 64, 128, 256),
    convs: int = 2,
) -> SegNet:
    """Build a :class:`SegNet` (the registry's factory for ``"segnet"``).

    Parameters
    ----------
    in_channels
        Input bands.
    num_classes
        Output classes.
    widths
        Channels of each encoder stage; its length is the number of poolings.
    convs
        Convolution blocks per stage (>= 1).

    Raises
    ------
    ModelError
        Empty ``widths``, a non-positive width, or ``convs`` < 1.
    """
    widths = tuple(int(value) for value in widths)
    if not widths or any(value <= 0 for value in widths):
        raise ModelError(f"segnet widths must be a non-empty list of positive ints, got {widths}")
    if convs < 1:
        raise ModelError(f"segnet convs must be >= 1, got {convs}")
    if in_channels < 1 or num_classes < 1:
        raise ModelError(
            f"segnet needs in_channels and num_classes >= 1, got {in_channels}, {num_classes}"
        )
    return SegNet(in_channels, num_classes, widths, convs)
