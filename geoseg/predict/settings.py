"""What a prediction is asked for: how the model runs, and which files it writes.

:class:`InferenceSettings` is the one place where the inference options and
their defaults are written (``geoseg predict``, ``geoseg run`` and ``geoseg
run-change`` build their options from it). It is checked when it is built,
before any file is read; what needs the model card (the default tile and
overlap) or the workers (``auto`` device and precision) is resolved later, by
:func:`geoseg.predict.placement.place_inference` and
:func:`geoseg.predict.plan.make_plan`.

This module imports neither torch nor Dask, so the command line can build
settings without loading them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geoseg.errors import ConfigError
from geoseg.grid import check_chunk_size
from geoseg.limits import MAX_PIXELS
from geoseg.predict.tiling import check_batch_size, check_tile_geometry

if TYPE_CHECKING:
    from geoseg.predict.placement import InferencePlacement

Precision = Literal["fp32", "bf16", "fp16", "int8"]
"""A resolved precision: a torch autocast type, or ``int8`` (ONNX Runtime, quantized)."""

Engine = Literal["torch", "onnxruntime"]
"""A resolved inference engine."""

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
ENGINES = ("torch", "onnxruntime", "auto")


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` unless ``device`` is one of :data:`DEVICES`."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


def check_precision(precision: str) -> None:
    """Raise :class:`ConfigError` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def check_engine(engine: str, precision: str = "auto") -> None:
    """Raise :class:`ConfigError` unless ``engine`` is in :data:`ENGINES` and runs ``precision``.

    PyTorch runs fp32, bf16 and fp16 (autocast), ONNX Runtime fp32 and int8
    (a quantized model); ``auto`` takes any precision.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "torch" and precision == "int8":
        raise ConfigError(
            "--precision int8 runs only on ONNX Runtime; use --engine onnxruntime or auto"
        )
    if engine == "onnxruntime" and precision in ("bf16", "fp16"):
        raise ConfigError(
            f"--engine onnxruntime runs fp32 or int8, not {precision}; use --engine torch for "
            f"{precision}"
        )


@dataclass(frozen=True)
class InferenceSettings:
    """How the model runs over a scene; validated when built.

    None of these change the outputs except ``device``, ``precision`` and
    ``engine`` (through the arithmetic of the hardware and the engine's
    kernels) and ``tile``/``overlap`` (the tiling): the chunk and batch sizes
    only change how the work is cut.
    """

    tile: int | None = None
    """Tile side in pixels; None: the model card's."""
    overlap: int | None = None
    """Overlap of neighbouring tiles in pixels; None: the model card's."""
    batch_size: int = 8
    """Tiles per forward task."""
    chunk_size: int = 2048
    """Output chunk side in pixels (the outputs do not depend on it)."""
    device: str = "auto"
    """``auto`` | ``cpu`` | ``cuda``; ``auto`` is CUDA when the workers have a GPU."""
    precision: str = "auto"
    """``auto`` | ``fp32`` | ``bf16`` | ``fp16`` | ``int8``, resolved for the workers and the
    model (``int8``: ONNX Runtime, where the card accepts its quantized model)."""
    engine: str = "torch"
    """``torch`` | ``onnxruntime`` | ``auto`` (see :func:`geoseg.predict.engines.select_engine`):
    ``auto`` picks the fastest engine and precision whose labels the model card records as
    agreeing with fp32 PyTorch."""
    bands: Mapping[str, int] | None = field(default=None, hash=False)
    """``{model band name: 1-based raster band}`` when a raster's band descriptions do
    not name its bands (e.g. ``{"blue": 1, "green": 2, "red": 3, "nir": 4}``)."""
    max_pixels: int = MAX_PIXELS
    """Budget of the scene's declared rows x columns, checked before any pixel is read."""
    allow_vrt: bool = False
    """Accept an input GDAL VRT (GeoTIFF and COG only otherwise)."""
    allow_pixel_size_mismatch: bool = False
    """Run a scene whose pixel size is far from the model card's (see
    :mod:`geoseg.predict.pixel_size`) instead of refusing it."""

    def __post_init__(self) -> None:
        check_tile_geometry(self.tile, self.overlap)
        check_batch_size(self.batch_size)
        check_chunk_size(self.chunk_size)
        check_device(self.device)
        check_precision(self.precision)
        check_engine(self.engine, self.precision)
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be at least 1, got {self.max_pixels}")

    def output_parameters(self, placement: InferencePlacement) -> dict[str, Any]:
        """The settings that can change the labels, as a run manifest records them.

        ``device``, ``precision`` and ``engine`` as asked for; ``device_used``,
        ``precision_used`` and ``engine_used`` as ``placement`` resolved them for
        the workers and the model.
        """
        return {
            "tile": self.tile,
            "overlap": self.overlap,
            "device": self.device,
            "precision": self.precision,
            "engine": self.engine,
            "device_used": placement.device,
            "precision_used": placement.precision,
            "engine_used": placement.engine,
        }


@dataclass(frozen=True)
class PredictOutputs:
    """The files a prediction writes."""

    labels: Path
    """Label COG (uint8 class ids, nodata 255, colour table, class names)."""
    probabilities: Path | None = None
    """Optional per-class probability COG (uint8 ``round(p * 255)``, a band per class)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", Path(self.labels))
        if self.probabilities is not None:
            object.__setattr__(self, "probabilities", Path(self.probabilities))

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every path written, labels first."""
        return (self.labels,) if self.probabilities is None else (self.labels, self.probabilities)
