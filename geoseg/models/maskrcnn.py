"""Mask R-CNN for countable objects (buildings, tree crowns), small enough for a CPU.

torchvision's Mask R-CNN, never with downloaded weights: a ResNet-18 trunk cut
after ``layer3`` (strides 4, 8 and 16; objects of 10-100 px at 0.5 m need no
deeper level) with a first convolution for any number of bands, a
``fpn_channels``-wide feature pyramid plus a max-pooled level, one anchor size
per level, and heads as narrow as the pyramid. About 3 million parameters
(6 MB in float16) instead of the 44 million of torchvision's ResNet-50 model.

Inputs are already scaled by :mod:`geoseg.predict.preprocess` (the card's
scaling), so the detector neither normalises nor resizes: a tile's pixel is
the model's pixel at any tile size, in training and in inference.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from geoseg.errors import ModelError

_LEVELS = ["0", "1", "2"]
NORMS = ("batch", "group")
"""Normalisation layers of the trunk, pyramid and mask head (see :func:`build_maskrcnn`)."""
GROUPS = 16
"""Channel groups of a ``group`` normalisation layer."""


def _norm_layer(norm: str) -> Any:
    """The normalisation-layer factory of ``norm`` (None: torchvision's default)."""
    if norm == "group":
        return partial(nn.GroupNorm, GROUPS)
    return None


class ScaledInputTransform(GeneralizedRCNNTransform):  # type: ignore[misc]
    """torchvision's detector transform without normalisation or resizing.

    geoseg scales inputs with the card's scaling before the model sees them,
    and tiles are fed at their own size, so a pixel keeps its ground size.
    """

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Return ``image`` unchanged (inputs are scaled by geoseg)."""
        return image

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Return ``image`` and ``target`` unchanged (no resampling)."""
        return image, target


def build_maskrcnn(
    *,
    in_channels: int,
    num_classes: int,
    fpn_channels: int = 64,
    anchor_sizes: tuple[int, ...] | list[int] = (16, 32, 64, 128),
    detections_per_tile: int = 100,
    norm: str = "batch",
    **options: Any,
) -> nn.Module:
    """An untrained Mask R-CNN for ``num_classes`` thing classes (background added).

    Parameters
    ----------
    in_channels
        Number of input bands.
    num_classes
        Number of object classes; label ``k`` of the detector is the card's
        class at position ``k - 1`` (0 is torchvision's background).
    fpn_channels
        Width of the feature pyramid and of the heads.
    anchor_sizes
        One anchor side in pixels per pyramid level (four levels).
    detections_per_tile
        Most detections kept per tile.
    norm
        ``batch``: batch normalisation in the trunk only (torchvision's layout);
        ``group``: group normalisation (:data:`GROUPS` groups) in the trunk, the
        pyramid and the mask head, which behaves the same in training and
        inference whatever the batch size (a batch of four chips gives batch
        normalisation poor running statistics).
    options
        Rejected: the message lists the valid options.

    Raises
    ------
    ModelError
        Unknown options, an unknown ``norm``, or an anchor list that is not one
        size per level.
    """
    if options:
        raise ModelError(
            f"unknown maskrcnn options {sorted(options)}; valid: fpn_channels, anchor_sizes, "
            "detections_per_tile, norm"
        )
    if norm not in NORMS:
        raise ModelError(f"maskrcnn norm must be one of {list(NORMS)}, got {norm!r}")
    norm_layer = _norm_layer(norm)
    if len(anchor_sizes) != len(_LEVELS) + 1:
        raise ModelError(f"anchor_sizes needs {len(_LEVELS) + 1} sizes, got {list(anchor_sizes)}")
    trunk = resnet18(weights=None, norm_layer=norm_layer)
    trunk.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    backbone = BackboneWithFPN(
        trunk,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2"},
        in_channels_list=[64, 128, 256],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=norm_layer,
    )
    anchors = AnchorGenerator(
        sizes=tuple((int(size),) for size in anchor_sizes),
        aspect_ratios=((0.5, 1.0, 2.0),) * len(anchor_sizes),
    )
    model: nn.Module = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=600,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=150,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=_LEVELS, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes + 1),
        box_batch_size_per_image=128,
        box_detections_per_img=detections_per_tile,
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=_LEVELS, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(fpn_channels, [fpn_channels] * 4, 1, norm_layer=norm_layer),
        mask_predictor=MaskRCNNPredictor(fpn_channels, fpn_channels, num_classes + 1),
    )
    model.transform = ScaledInputTransform(
        min_size=1, max_size=1, image_mean=[0.0] * in_channels, image_std=[1.0] * in_channels
    )
    return model
