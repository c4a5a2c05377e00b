"""The training configuration (``geoseg train --config train.yaml``), validated.

One YAML file says what to train (architecture, bands, scaling, classes), on
which scenes (images with dense label rasters or sparse labelled polygons, and
the windows of each scene that training and validation may use), and how
(chips, epochs, loss, seed). Unknown keys are rejected. Paths are relative to
the data directory (``GEOSEG_DATA_DIR`` or ``../shared/data``) unless absolute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from geoseg.config import StrictModel, load_yaml_config
from geoseg.grid import PixelWindow
from geoseg.models.card import BandSpec, ClassSpec, InputScaling
from geoseg.training.losses import LossName


def _default_loss() -> list[LossName]:
    return ["cross_entropy", "dice"]


class WindowSpec(StrictModel):
    """A pixel window of a scene: top-left ``row``/``col`` and size."""

    row: int = Field(ge=0)
    col: int = Field(ge=0)
    height: int = Field(gt=0)
    width: int = Field(gt=0)

    def to_window(self) -> PixelWindow:
        """The equivalent :class:`PixelWindow`."""
        return PixelWindow(self.row, self.col, self.height, self.width)


class DenseLabels(StrictModel):
    """A label raster on any grid; it is read onto the image grid (nearest).

    ``codes`` maps label values to class ids; values it does not list, and the
    raster's nodata, are ignored. Without ``codes`` each value is its own class
    id (values that are not a class id are ignored).
    """

    path: str = Field(min_length=1)
    codes: dict[int, int] | None = None


class SparseLabels(StrictModel):
    """Labelled polygons rasterised onto the image grid; unlabelled pixels are ignored.

    ``field`` holds each polygon's label; ``codes`` maps its values (compared
    as text) to class ids, or the scene's ``class_map`` does. Polygons whose
    value is not mapped are ignored. A polygon smaller than a pixel (the
    footprint of a labelled point on a finer grid) labels the pixel holding
    its centroid.
    """

    path: str = Field(min_length=1)
    field: str = Field("class", min_length=1)
    layer: str | None = Field(None, description="layer of a multi-layer file (default: first)")
    codes: dict[str, int] | None = Field(None, min_length=1)


class ClassMapRef(StrictModel):
    """A scene's class names mapped to card classes through a class-map CSV.

    The CSV has columns ``site``, ``class`` and one column per harmonisation
    (e.g. ``forest`` 0/1 and ``general_class``, as ``sites/class_map.csv``).
    A label named ``class`` of ``site`` becomes class id ``values[row[column]]``;
    names the CSV does not list for the site, and column values ``values``
    does not list, are ignored. Dense label rasters name their codes in the
    tags ``class_<code>``.
    """

    path: str = Field(min_length=1)
    site: str = Field(min_length=1)
    column: str = Field("forest", min_length=1)
    values: dict[str, int] = Field(min_length=1, description="column value -> class id")


class SceneSpec(StrictModel):
    """One training image, its labels, and where training and validation may sample."""

    image: str = Field(min_length=1)
    band_indexes: list[int] | None = Field(
        None,
        min_length=1,
        description="1-based, in card band order (default: the bands whose common_name tag, "
        "else description, names the card's bands)",
    )
    dense_labels: DenseLabels | None = None
    sparse_labels: SparseLabels | None = None
    class_map: ClassMapRef | None = None
    region: str = Field("", description="region name for held-out-region evaluation")
    train_windows: list[WindowSpec] | None = Field(
        None, description="windows chips may come from (default: the whole image)"
    )
    validation_windows: list[WindowSpec] = Field(default_factory=list)
    region_mask: str | None = Field(
        None, description="raster on the image grid; only pixels != 0 are used for training"
    )
    weight: float = Field(1.0, gt=0, description="relative share of training chips")
    sensor: str = Field(
        "", description="e.g. 'Landsat-8 OLI' (default: the image's 'sensor' tag, if any)"
    )

    @model_validator(mode="after")
    def _check_labels(self) -> SceneSpec:
        if (self.dense_labels is None) == (self.sparse_labels is None):
            raise ValueError("give exactly one of 'dense_labels' and 'sparse_labels'")
        if self.sparse_labels is not None and (
            (self.sparse_labels.codes is None) == (self.class_map is None)
        ):
            raise ValueError("sparse_labels need exactly one of 'codes' and a 'class_map'")
        if self.dense_labels is not None and self.dense_labels.codes and self.class_map:
            raise ValueError("give dense_labels 'codes' or a 'class_map', not both")
        if any(index < 1 for index in self.band_indexes or []):
            raise ValueError("band_indexes are 1-based and must be >= 1")
        for train in self.train_windows or []:
            for validation in self.validation_windows:
                overlap = train.to_window().intersection(validation.to_window())
                if not overlap.is_empty:
                    raise ValueError(
                        f"train window {train} overlaps validation window {validation}; "
                        "keep them apart so validation is honest"
                    )
        return self


class RadiometricJitter(StrictModel):
    """Random per-band gain and offset applied to each training chip after scaling.

    Each band of a chip becomes ``value * gain + offset`` with ``gain`` drawn
    from a normal distribution of mean 1 and standard deviation ``gain_std``
    and ``offset`` from one of mean 0 and standard deviation ``offset_std``
    (in scaled units: with ``scene_percentile`` scaling, 1 is the span between
    the scene's low and high percentiles). Validation chips are never jittered.
    """

    gain_std: float = Field(0.1, ge=0, le=0.5)
    offset_std: float = Field(0.05, ge=0, le=0.5)


class TrainConfig(StrictModel):
    """Everything ``geoseg train`` needs; becomes the model card of the result."""

    name: str = Field(min_length=1)
    description: str = ""
    task: Literal["semantic", "instance"] = Field(
        "semantic",
        description="instance: each labelled polygon is one object (Mask R-CNN); classes are "
        "the object classes and the loss is the detector's own",
    )
    architecture: str = Field(min_length=1)
    encoder: str = ""
    architecture_options: dict[str, Any] = Field(default_factory=dict)
    bands: list[BandSpec] = Field(min_length=1)
    scaling: InputScaling
    classes: list[ClassSpec] = Field(min_length=1)
    scenes: list[SceneSpec] = Field(min_length=1)
    chip_size: int = Field(128, ge=16)
    batch_size: int = Field(16, ge=1)
    chips_per_epoch: int = Field(256, ge=1)
    epochs: int = Field(20, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    loss: list[LossName] = Field(default_factory=_default_loss, min_length=1)
    class_weights: list[float] | None = Field(
        None, description="cross-entropy weight per class, in class order (default: equal)"
    )
    early_stopping_patience: int = Field(5, ge=1, description="epochs without improvement")
    chip_sampling: Literal["uniform", "class_balanced"] = Field(
        "uniform",
        description="uniform: chip windows drawn uniformly from the training windows; "
        "class_balanced: each chip contains a pixel of a class drawn with probability "
        "proportional to (its training-pixel count) ** class_balance_power",
    )
    class_balance_power: float = Field(
        0.5, ge=0, le=1, description="0: classes equally often; 1: as often as their pixels"
    )
    radiometric_jitter: RadiometricJitter | None = None
    validation_score: Literal["mean_iou", "mean_iou_labelled"] = Field(
        "mean_iou",
        description="what selects the kept epoch and drives early stopping: mean IoU over "
        "the classes present in validation truth or prediction, or only over the classes "
        "that have validation labels (a class absent from the validation labels cannot be "
        "measured there; predicting it already costs the true class's IoU)",
    )
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16_autocast: bool = False
    threads: int | None = Field(None, ge=1, description="CPU threads (default: torch's)")
    weights_dtype: Literal["float32", "float16"] = Field(
        "float32", description="storage type of the written weights (float16: half the size)"
    )
    tile_size: int = Field(256, ge=16, description="tile size recorded in the card")
    overlap: int = Field(32, ge=0, description="tile overlap recorded in the card")
    pixel_size_m: float = Field(30.0, gt=0)
    resampling: Literal["native", "card_pixel_size"] = Field(
        "native",
        description="native: every scene at its own pixel size (training across scales); "
        "card_pixel_size: finer scenes are read at the whole multiple of their pixel nearest "
        "pixel_size_m, as block means (windows are in pixels of that grid)",
    )
    attribution: str = ""
    training_data: list[str] = Field(default_factory=list, description="for the card")
    split: str = Field("", description="how the data were split, for the card")

    @model_validator(mode="after")
    def _check_consistency(self) -> TrainConfig:
        if self.task == "semantic" and len(self.classes) < 2:
            raise ValueError("a semantic model needs at least 2 classes")
        for scene in self.scenes:
            if scene.band_indexes is not None and len(scene.band_indexes) != len(self.bands):
                raise ValueError(
                    f"scene {scene.image} lists {len(scene.band_indexes)} band_indexes for "
                    f"{len(self.bands)} bands"
                )
            for window in [*(scene.train_windows or []), *scene.validation_windows]:
                if window.height < self.chip_size or window.width < self.chip_size:
                    raise ValueError(
                        f"window {window} of {scene.image} is smaller than chip_size "
                        f"{self.chip_size}"
                    )
        if not any(scene.validation_windows for scene in self.scenes):
            raise ValueError("at least one scene needs validation_windows (early stopping)")
        ids = {spec.id for spec in self.classes}
        for scene in self.scenes:
            labels = scene.dense_labels or scene.sparse_labels
            codes = labels.codes if labels is not None else None
            mapped = scene.class_map.values if scene.class_map is not None else {}
            unknown = sorted({*(codes or {}).values(), *mapped.values()} - ids)
            if unknown:
                raise ValueError(f"labels of {scene.image} map to unknown class ids {unknown}")
        if self.class_weights is not None and (
            len(self.class_weights) != len(self.classes) or min(self.class_weights) <= 0
        ):
            raise ValueError(
                f"class_weights needs one positive weight per class ({len(self.classes)})"
            )
        if 2 * self.overlap >= self.tile_size:
            raise ValueError("overlap must be less than half of tile_size")
        return self


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config (YAML); errors name the file and key."""
    return load_yaml_config(TrainConfig, path)
