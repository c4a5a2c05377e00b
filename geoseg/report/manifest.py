"""The run manifest: what a run read, with which model and parameters, and how long it took.

A manifest is stored twice with the outputs: as JSON beside the GeoPackage
(everything, timings included) and as the ``run_manifest`` table inside it
(everything that decides the outputs, *without* timings, so a resumed run
writes a byte-identical GeoPackage).

The run id is the SHA-256 of the canonical JSON of the run's *key*: inputs
with their checksums, model hash, parameters and the target grid. The same
arguments give the same id, which names the work directory a killed run
resumes from. The run's time is taken once, at its first attempt, and reused
on every resume; ``SOURCE_DATE_EPOCH`` (the reproducible-builds convention)
fixes it for runs that must be byte-identical across separate attempts.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

from pydantic import Field

from geoseg.config import StrictModel

SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
_PACKAGES = (
    "geoseg",
    "numpy",
    "rasterio",
    "pyogrio",
    "geopandas",
    "shapely",
    "torch",
    "segmentation-models-pytorch",
    "onnxruntime",
    "dask",
    "distributed",
    "odc-geo",
    "pystac",
)


class InputFile(StrictModel):
    """One input file: its catalog id, href (relative to the data directory) and SHA-256."""

    id: str
    href: str
    sha256: str


class ModelInfo(StrictModel):
    """The model a run used."""

    name: str
    weights_sha256: str
    requested: str | None = Field(
        None, description="the alias the model was asked for (None: its name or directory)"
    )
    architecture: str = ""
    classes: dict[str, str] = Field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What a run id hashes of the model: everything but the alias it was asked for."""
        return self.model_dump(exclude={"requested"})


class SceneQuality(StrictModel):
    """How much of one scene its quality band masked on the run's grid."""

    scene: str
    quality_band: int | None = Field(description="1-based band index; None: the scene has none")
    convention: str | None = Field(description="geoseg.quality convention of that band")
    mask_buffer_px: int = Field(description="pixels clouds and shadows were grown by")
    observed_pixels: int = Field(description="grid pixels where the scene holds data")
    masked_pixels: int = Field(description="of those, pixels masked (quality band, saturation)")
    masked_share: float = Field(description="masked_pixels / observed_pixels (0 when none)")


class RunManifest(StrictModel):
    """Everything needed to tell what a run did and to repeat it."""

    schema_version: Literal[1] = 1
    command: str
    run_id: str
    started: str = Field(description="UTC time of the first attempt (ISO 8601)")
    inputs: list[InputFile]
    model: ModelInfo
    parameters: dict[str, Any]
    grid: dict[str, Any]
    versions: dict[str, str]
    outputs: dict[str, str] = Field(default_factory=dict)
    domain_findings: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        description="per predicted scene (e.g. 'before'), how it lies outside the model's "
        "training domain (geoseg.predict.domain.DomainFinding as data); empty lists: inside",
    )
    flags: list[dict[str, str]] = Field(
        default_factory=list, description="quality flags: code, where (run or region), message"
    )
    quality: list[SceneQuality] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(default_factory=dict)


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: the same data always gives the same text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def run_id(key: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``key`` (inputs, model hash, parameters, grid)."""
    return hashlib.sha256(canonical_json(dict(key)).encode("utf-8")).hexdigest()


def run_time(environment: Mapping[str, str], now: datetime) -> str:
    """The run's time: ``SOURCE_DATE_EPOCH`` when set, else ``now``; ISO 8601, UTC, seconds."""
    epoch = environment.get(SOURCE_DATE_EPOCH)
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else now.astimezone(UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def software_versions() -> dict[str, str]:
    """Versions of Python, GDAL and the packages that shape the outputs."""
    import rasterio

    versions = {"python": platform.python_version(), "gdal": str(rasterio.__gdal_version__)}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def provenance_rows(manifest: RunManifest) -> list[dict[str, str]]:
    """The manifest without timings as ``key``/``value`` rows (values are JSON text)."""
    data = manifest.model_dump(mode="json", exclude={"timings_s"})
    return [{"key": key, "value": canonical_json(value)} for key, value in data.items()]
