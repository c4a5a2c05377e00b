"""The model card: everything needed to use a trained model correctly.

A model directory holds ``card.json`` (this schema) and the weights in
safetensors. The card says which bands the model reads and in what order, how a
scene's values are scaled before the forward pass, the classes it predicts and
their colours, the tile geometry it was trained for, how it was trained and how
it scored on held-out data, and the SHA-256 of the weights.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from geoseg.config import StrictModel
from geoseg.labels import MAX_CLASS_ID, Colour, forest_class_ids, hex_colour, is_hex_colour

CARD_FILENAME = "card.json"
WEIGHTS_FILENAME = "weights.safetensors"


class BandSpec(StrictModel):
    """One input band, by common name (``blue``, ``green``, ``red``, ``nir``, ...)."""

    name: str = Field(min_length=1)
    description: str = ""


class ClassSpec(StrictModel):
    """One output class."""

    id: int = Field(ge=0, le=MAX_CLASS_ID)
    name: str = Field(min_length=1)
    color: str = Field(description="#rrggbb")

    @field_validator("color")
    @classmethod
    def _check_colour(cls, value: str) -> str:
        if not is_hex_colour(value):
            raise ValueError(f"colour must look like '#1a2b3c', got {value!r}")
        return value.lower()

    @property
    def rgb(self) -> Colour:
        """The colour as an ``(r, g, b)`` tuple of 0-255 ints."""
        return hex_colour(self.color)


class InputScaling(StrictModel):
    """How a scene's band values become model inputs.

    Step 1 (scene to physical units) uses the scene's own per-band scale and
    offset (``physical = raw * scale + offset``) from its catalog entry, the
    raster's band metadata or the command line; ``units`` names the physical
    quantity the model expects after that step.

    Step 2 (normalisation):

    - ``"standardize"``: ``(physical - mean) / std`` per band, with the
      training statistics in ``mean`` and ``std``.
    - ``"scene_percentile"``: per band, the scene's ``percentiles[0]`` and
      ``percentiles[1]`` percentiles of valid pixels (computed once over the
      whole scene) map to 0 and 1. This makes the model insensitive to linear
      differences in units between sensors and processing levels.
    """

    units: str = Field(min_length=1, description="e.g. 'reflectance' (0-1)")
    method: Literal["standardize", "scene_percentile"]
    mean: list[float] | None = None
    std: list[float] | None = None
    percentiles: tuple[float, float] = (2.0, 98.0)

    @model_validator(mode="after")
    def _check_method_fields(self) -> InputScaling:
        if self.method == "standardize":
            if self.mean is None or self.std is None:
                raise ValueError("method 'standardize' needs 'mean' and 'std' (one per band)")
            if len(self.mean) != len(self.std):
                raise ValueError("'mean' and 'std' must have one value per band")
            if any(value <= 0 for value in self.std):
                raise ValueError("every 'std' value must be > 0")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
        return self


class TrainingInfo(StrictModel):
    """How the weights were produced."""

    data: list[str] = Field(default_factory=list, description="training datasets")
    split: str = Field("", description="how train/validation/test were separated")
    epochs: int | None = None
    seed: int | None = None
    loss: str = ""
    command: str = Field("", description="command that reproduces the weights")
    duration_s: float | None = None


class BandDistribution(StrictModel):
    """The distribution of one band's model inputs (values after the card's scaling)."""

    name: str = Field(min_length=1)
    p1: float
    p50: float
    p99: float
    mean: float
    std: float = Field(ge=0)

    @model_validator(mode="after")
    def _check_order(self) -> BandDistribution:
        if not self.p1 <= self.p50 <= self.p99:
            raise ValueError(
                f"band {self.name}: percentiles must satisfy p1 <= p50 <= p99, got "
                f"{self.p1}, {self.p50}, {self.p99}"
            )
        return self


class RegionScores(StrictModel):
    """Forest-class scores (forest against the rest) on one region left out of training."""

    kappa: float = Field(ge=-1, le=1, description="Cohen's kappa")
    f1: float = Field(ge=0, le=1)
    iou: float = Field(ge=0, le=1)
    pixels: int | None = Field(None, ge=0, description="labelled pixels scored")
    forest_pixels: int | None = Field(None, ge=0, description="of which labelled forest")
    region: str | None = Field(None, description="on the 'worst' entry: which region it is")


HELD_OUT_SUMMARIES = ("mean", "worst")
"""Entries of ``metrics.held_out_regions`` that summarise the regions."""
HELD_OUT_NOTES = ("definition", "random_forest_baseline")
"""Entries of ``metrics.held_out_regions`` that are not scores of the model."""


def parse_held_out_regions(entries: dict[str, Any]) -> dict[str, RegionScores]:
    """Typed ``metrics.held_out_regions`` (or its ``random_forest_baseline``).

    One entry per region, named by region, plus ``mean`` and ``worst``; the
    text ``definition`` and the ``random_forest_baseline`` (the same shape) are
    skipped here.

    Raises
    ------
    ValueError
        ``mean`` or ``worst`` missing, no region, or an entry that is not
        kappa, F1 and IoU in range.
    """
    scores = {
        name: RegionScores.model_validate(value)
        for name, value in entries.items()
        if name not in HELD_OUT_NOTES
    }
    missing = [name for name in HELD_OUT_SUMMARIES if name not in scores]
    if missing or len(scores) == len(HELD_OUT_SUMMARIES):
        raise ValueError(
            "metrics.held_out_regions needs one entry per region plus 'mean' and 'worst', "
            f"got {sorted(scores)}"
        )
    return scores


class TrainingDomain(StrictModel):
    """What the model saw in training: scaled band values, pixel sizes and sensors.

    ``geoseg predict`` compares a scene with this record
    (:func:`geoseg.predict.domain.compare_domain`) and warns when the scene lies
    far outside it.
    """

    bands: list[BandDistribution] = Field(min_length=1, description="in card band order")
    pixel_sizes_m: list[float] = Field(
        min_length=1, description="ground pixel sizes of the training scenes (m)"
    )
    sensors: list[str] = Field(
        default_factory=list,
        description="sensor families of the training scenes ('landsat-8', 'sentinel-2'...); "
        "empty when unknown",
    )
    pixels: int = Field(ge=1, description="valid pixels sampled")
    sampling: str = Field("", description="which pixels were sampled, and how they were weighted")

    @field_validator("pixel_sizes_m")
    @classmethod
    def _check_sizes(cls, value: list[float]) -> list[float]:
        if any(size <= 0 for size in value):
            raise ValueError(f"pixel sizes must be > 0, got {value}")
        return value


class CpuSpeeds(StrictModel):
    """One tile's forward time per CPU engine, measured when the model was packaged.

    ``--engine auto`` orders the engines by it on CPUs of the same kind (the
    same native bf16 and int8 dot-product instructions); elsewhere it falls
    back to :data:`geoseg.predict.engines.CPU_SPEED_ORDER`.
    """

    cpu: str = Field(description="the CPU's model name (/proc/cpuinfo)")
    bf16: bool = Field(description="the CPU has native bf16 instructions")
    int8_dot: bool = Field(description="the CPU has int8 dot-product instructions (VNNI, AMX)")
    tile: int = Field(ge=1, description="side of the tile timed, pixels")
    threads: int = Field(ge=1, description="threads of one forward pass (as a Dask worker)")
    ms_per_tile: dict[str, float] = Field(
        description="median milliseconds per tile, by ENGINE:PRECISION (torch:bf16, ...)"
    )

    @field_validator("ms_per_tile")
    @classmethod
    def _check_keys(cls, value: dict[str, float]) -> dict[str, float]:
        known = {"torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown engines {unknown}; known: {sorted(known)}")
        if any(ms <= 0 for ms in value.values()):
            raise ValueError("times must be > 0")
        return value


class OnnxRecord(StrictModel):
    """ONNX Runtime's labels against fp32 PyTorch's, measured when the model was packaged.

    ``geoseg models quantize`` writes it (:mod:`geoseg.models.export`):
    ``--engine auto`` runs the model on ONNX Runtime only when
    ``fp32_agreement`` is at least 0.999, and in int8 only when the quantized
    model was accepted (``int8_file`` set: ``int8_agreement`` at least 0.995).
    """

    opset: int = Field(ge=7, description="ONNX opset of the exported graph")
    fp32_agreement: float = Field(
        ge=0.0,
        le=1.0,
        description="share of the pixels labelled alike by ORT fp32 and PyTorch fp32",
    )
    int8_agreement: float | None = Field(
        None, ge=0.0, le=1.0, description="the same for the int8 model (None: not quantized)"
    )
    int8_file: str | None = Field(
        None, description="the accepted int8 model in the model directory (None: refused or none)"
    )
    int8_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    quantization: str = Field("", description="how the int8 model was quantized and calibrated")
    pixels: int = Field(ge=0, description="valid pixels the agreements were measured on")
    measured_on: str = Field("", description="which pixels: the validation windows of the training")
    cpu_speeds: CpuSpeeds | None = Field(
        None, description="forward time per engine on the packaging machine (for --engine auto)"
    )

    @model_validator(mode="after")
    def _check_int8(self) -> OnnxRecord:
        if (self.int8_file is None) != (self.int8_sha256 is None):
            raise ValueError("int8_file and int8_sha256 go together")
        if self.int8_file is not None and self.int8_agreement is None:
            raise ValueError("an int8_file needs its int8_agreement")
        return self


class ExportRecord(StrictModel):
    """How an exported model (``geoseg models export``) was made and checked."""

    format: Literal["onnx"]
    file: str = Field(min_length=1, description="the exported model, beside this card")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int = Field(ge=7)
    precision: Literal["fp32", "int8"] = "fp32"
    label_agreement: float = Field(
        ge=0.0,
        le=1.0,
        description="share of the scene's pixels labelled alike by it and PyTorch fp32",
    )
    pixels: int = Field(ge=0, description="valid tile pixels the agreement was measured on")
    scene: str = Field("", description="the scene it was measured on")
    inputs: str = Field(
        "", description="the graph's input: name, layout and dynamic axes; outputs: logits"
    )


class ModelCard(StrictModel):
    """Validated model card (``card.json`` of a model directory)."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1)
    description: str = ""
    task: Literal["semantic", "instance"] = Field(
        "semantic",
        description="semantic: one class per pixel (logits per class); instance: objects, each "
        "with a class, a score and a mask (classes are the thing classes, without background)",
    )
    architecture: str = Field(min_length=1, description="registry name, e.g. 'unet'")
    encoder: str = Field("", description="smp encoder name, e.g. 'resnet18'")
    architecture_options: dict[str, Any] = Field(default_factory=dict)
    bands: list[BandSpec] = Field(min_length=1)
    scaling: InputScaling
    classes: list[ClassSpec] = Field(min_length=1)
    pixel_size_m: float = Field(gt=0)
    tile_size: int = Field(ge=16)
    overlap: int = Field(ge=0)
    training: TrainingInfo = Field(default_factory=TrainingInfo)
    metrics: dict[str, Any] = Field(default_factory=dict)
    attribution: str = ""
    weights_file: str = WEIGHTS_FILENAME
    weights_dtype: Literal["float32", "float16"] = Field(
        "float32",
        description="storage type of the floating-point weights; float16 halves the file and "
        "is widened to float32 when loaded",
    )
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    cpu_bf16_agreement: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of the validation pixels whose label under CPU bf16 autocast equals "
        "the fp32 label, measured with the stored weights when the model was trained; "
        "``--precision auto`` runs the model in bf16 on CPUs with native bf16 when this is at "
        "least 0.995 (None: not measured, fp32)",
    )
    training_domain: TrainingDomain | None = Field(
        None,
        description="the distribution of the scaled training inputs, pixel sizes and sensors "
        "(None: not recorded, no out-of-domain check)",
    )
    resampling: Literal["native", "card_pixel_size"] = Field(
        "native",
        description="how a scene is read: native: at its own pixel size; card_pixel_size: a "
        "finer scene at the whole multiple of its pixel nearest pixel_size_m, as block means "
        "of valid pixels (a 10 m scene for a 30 m card as 3 x 3 block means), as in training",
    )
    aliases: list[str] = Field(
        default_factory=list,
        description="other names the shipped model is found by (e.g. a former name); "
        "geoseg.models.loading.resolve_model_dir resolves them",
    )
    onnx: OnnxRecord | None = Field(
        None,
        description="ONNX Runtime fp32 and int8 label agreement with PyTorch fp32 (None: not "
        "measured; ``--engine auto`` then runs PyTorch)",
    )
    export: ExportRecord | None = Field(
        None, description="set in the card of an exported model only (``geoseg models export``)"
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelCard:
        ids = [spec.id for spec in self.classes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"class ids must be unique, got {ids}")
        names = [band.name for band in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"band names must be unique, got {names}")
        if self.scaling.mean is not None and len(self.scaling.mean) != len(self.bands):
            raise ValueError(
                f"scaling has {len(self.scaling.mean)} mean values for {len(self.bands)} bands"
            )
        if self.training_domain is not None:
            recorded = [band.name for band in self.training_domain.bands]
            if recorded != names:
                raise ValueError(
                    f"training_domain has bands {recorded}, the card's bands are {names}"
                )
        if self.name in self.aliases or len(set(self.aliases)) != len(self.aliases):
            raise ValueError(
                f"aliases must be unique and differ from the name {self.name!r}, got {self.aliases}"
            )
        if any(not alias.strip() or "/" in alias for alias in self.aliases):
            raise ValueError(f"aliases must be plain non-empty names, got {self.aliases}")
        if 2 * self.overlap >= self.tile_size:
            raise ValueError(
                f"overlap {self.overlap} must be less than half the tile size {self.tile_size}"
            )
        held_out = self.metrics.get("held_out_regions")
        if held_out is not None:
            parse_held_out_regions(held_out)
            if "random_forest_baseline" in held_out:
                parse_held_out_regions(held_out["random_forest_baseline"])
        return self

    @property
    def held_out_regions(self) -> dict[str, RegionScores] | None:
        """Typed ``metrics.held_out_regions``: per region, ``mean``, ``worst`` (None: absent)."""
        held_out = self.metrics.get("held_out_regions")
        return None if held_out is None else parse_held_out_regions(held_out)

    @property
    def band_names(self) -> list[str]:
        """Input band names in model order."""
        return [band.name for band in self.bands]

    @property
    def num_classes(self) -> int:
        """Number of output channels (classes are output channels in id order)."""
        return len(self.classes)

    @property
    def class_ids(self) -> list[int]:
        """Label value written for each output channel, in channel order."""
        return [spec.id for spec in self.classes]

    @property
    def forest_class_ids(self) -> list[int]:
        """Ids of the forest classes (:func:`geoseg.labels.forest_class_ids`): forest for change."""
        return forest_class_ids({spec.id: spec.name for spec in self.classes})
