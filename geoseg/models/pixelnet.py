"""PixelNet: a mostly per-pixel classifier with a little 3x3 context and band-ratio indices.

Most of what separates forest from the rest in four scaled bands is in each
pixel's own spectrum, and a per-pixel random forest generalises across regions
better than a U-Net on the same bands. PixelNet is built like such a classifier
but is an ordinary segmentation module (``(N, bands, H, W)`` to logits
``(N, classes, H, W)``), usable by every tiled prediction path:

1. optional normalised differences of band pairs, computed in :meth:`forward`
   from the scaled inputs (e.g. NDVI from nir and red) and appended as channels;
2. a per-pixel multilayer perceptron (1x1 convolutions with ReLU);
3. optionally ``context`` stacked 3x3 convolutions over the perceptron's
   features (each widens the view by one pixel on every side), concatenated
   with the per-pixel features;
4. a 1x1 convolution to the class logits.

No normalisation layers: batch statistics would mix scenes and sensors.
"""

from __future__ import annotations

import torch
from torch import nn

from geoseg.errors import ModelError

INDEX_EPSILON = 0.1
"""Added to ``|a| + |b|`` in a normalised difference: scaled inputs can be near 0 or negative."""


def normalized_difference(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``(a - b) / (|a| + |b| + INDEX_EPSILON)``: an NDVI-like index, bounded in (-1, 1).

    The absolute values and the epsilon keep it finite and smooth where scaled
    values (per-scene percentiles map to 0..1) are near zero or below it.
    """
    return (first - second) / (first.abs() + second.abs() + INDEX_EPSILON)


class PixelNet(nn.Module):
    """Per-pixel perceptron with optional band indices and 3x3 context.

    Parameters
    ----------
    in_channels
        Input bands.
    num_classes
        Output classes.
    hidden
        Channels of each per-pixel (1x1) layer.
    context
        Number of 3x3 convolutions over the per-pixel features (0: purely per pixel).
    context_channels
        Channels of each 3x3 convolution.
    indices
        Band pairs ``(a, b)`` (0-based input channels); each adds ``normalized_difference``.
    dropout
        Dropout probability before the head (0: none).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: tuple[int, ...],
        context: int,
        context_channels: int,
        indices: tuple[tuple[int, int], ...],
        dropout: float,
    ) -> None:
        super().__init__()
        self.indices = indices
        layers: list[nn.Module] = []
        previous = in_channels + len(indices)
        for width in hidden:
            layers += [nn.Conv2d(previous, width, kernel_size=1), nn.ReLU(inplace=True)]
            previous = width
        self.pixel = nn.Sequential(*layers)
        context_layers: list[nn.Module] = []
        context_in = previous
        for _ in range(context):
            context_layers += [
                nn.Conv2d(context_in, context_channels, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
            ]
            context_in = context_channels
        self.context = nn.Sequential(*context_layers)
        head_in = previous + (context_channels if context else 0)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(head_in, num_classes, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)`` for images ``(N, in_channels, H, W)``."""
        extra = [normalized_difference(images[:, a], images[:, b]) for a, b in self.indices]
        features = torch.cat([images, torch.stack(extra, dim=1)], dim=1) if extra else images
        features = self.pixel(features)
        if len(self.context):
            features = torch.cat([features, self.context(features)], dim=1)
        logits: torch.Tensor = self.head(self.dropout(features))
        return logits


def build_pixelnet(
    *,
    in_channels: int,
    num_classes: int,
    hidden: list[int] | tuple[int, ...] = (64, 64),
    context: int = 1,
    context_channels: int = 16,
    indices: list[list[int]] | tuple[tuple[int, int], ...] = (),
    dropout: float = 0.0,
) -> PixelNet:
    """Build a :class:`PixelNet` (the registry's factory for ``"pixelnet"``).

    Parameters
    ----------
    in_channels
        Input bands.
    num_classes
        Output classes.
    hidden
        Channels of each per-pixel layer (at least one layer).
    context
        3x3 convolutions over the per-pixel features (0: none).
    context_channels
        Channels of each 3x3 convolution.
    indices
        Pairs of 0-based input channels ``[a, b]``; each adds the channel
        ``(a - b) / (|a| + |b| + 0.1)`` (``[nir, red]``: an NDVI).
    dropout
        Dropout probability before the head.

    Raises
    ------
    ModelError
        Empty or non-positive ``hidden``, negative ``context``, an index pair
        that is not two distinct input channels, or ``dropout`` outside [0, 1).
    """
    widths = tuple(int(value) for value in hidden)
    if not widths or any(value <= 0 for value in widths):
        raise ModelError(f"pixelnet hidden must be a non-empty list of positive ints, got {widths}")
    if context < 0 or context_channels < 1:
        raise ModelError(
            f"pixelnet needs context >= 0 and context_channels >= 1, got {context}, "
            f"{context_channels}"
        )
    if in_channels < 1 or num_classes < 1:
        raise ModelError(
            f"pixelnet needs in_channels and num_classes >= 1, got {in_channels}, {num_classes}"
        )
    pairs: list[tuple[int, int]] = []
    for pair in indices:
        values = tuple(int(value) for value in pair)
        if (
            len(values) != 2
            or values[0] == values[1]
            or not all(0 <= value < in_channels for value in values)
        ):
            raise ModelError(
                f"pixelnet indices must be pairs of two distinct input channels in "
                f"0..{in_channels - 1}, got {list(pair)}"
            )
        pairs.append((values[0], values[1]))
    if not 0 <= dropout < 1:
        raise ModelError(f"pixelnet dropout must be in [0, 1), got {dropout}")
    return PixelNet(
        in_channels, num_classes, widths, int(context), int(context_channels), tuple(pairs), dropout
    )
