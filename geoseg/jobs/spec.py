"""The job spec: what a scheduled change-detection job watches, how often, and where it writes.

A spec is a YAML file validated against :class:`JobSpec` (unknown keys are
rejected, cross-field rules are checked with messages that name the fix)::

    name: lacandona-forest
    area:
      bbox: [-91.2, 16.2, -90.9, 16.5]
      bbox_crs: EPSG:4326
    catalog:
      collection: landsat-c2-l2
      start: 1999-01-01
    model: forest
    schedule:
      cron: "0 6 * * *"
    output_dir: /srv/geoseg/lacandona
    misfire: once
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from geoseg.bbox import BBox, make_bbox
from geoseg.config import StrictModel, load_yaml_config, validate_mapping
from geoseg.errors import BBoxError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class AreaSpec(StrictModel):
    """Where the job looks: a bbox in any CRS, a regions file with the ids to watch, or both.

    The bbox follows :func:`geoseg.bbox.make_bbox` (in longitude/latitude,
    ``minx > maxx`` crosses the antimeridian).

    With a regions file, change statistics are reported per region; with a bbox
    only, the bbox itself is the one region (id ``"bbox"``).
    """

    bbox: tuple[float, float, float, float] | None = Field(
        default=None, description="minx, miny, maxx, maxy in bbox_crs"
    )
    bbox_crs: str = "EPSG:4326"
    regions: Path | None = Field(default=None, description="vector file of regions")
    region_layer: str | None = None
    region_id_field: str = "id"
    region_ids: tuple[str, ...] = Field(
        default=(), description="ids of the regions to watch; empty means all"
    )

    @model_validator(mode="after")
    def _check_area(self) -> AreaSpec:
        if self.bbox is None and self.regions is None:
            raise ValueError(
                "give the area as 'bbox: [minx, miny, maxx, maxy]' (with 'bbox_crs') "
                "or as 'regions: FILE' with 'region_ids'"
            )
        if self.bbox is not None:
            try:
                make_bbox(self.bbox, self.bbox_crs)
            except BBoxError as error:
                raise ValueError(str(error)) from None
        if self.region_ids and self.regions is None:
            raise ValueError("'region_ids' needs 'regions: FILE' naming the regions file")
        return self

    def validated_bbox(self) -> BBox | None:
        """The bbox as a :class:`geoseg.bbox.BBox` (None for a regions-only area)."""
        return None if self.bbox is None else make_bbox(self.bbox, self.bbox_crs)


class CatalogQuery(StrictModel):
    """Which scenes count: the catalog, its collection, and acquisition dates.

    The catalog records no cloud cover, so there is no cloud constraint.
    """

    catalog: str | None = Field(
        default=None, description="a static STAC catalog path or STAC API URL; default: embedded"
    )
    collection: str | None = None
    start: datetime | None = Field(default=None, description="ignore scenes acquired before")
    end: datetime | None = Field(default=None, description="ignore scenes acquired after")

    @model_validator(mode="after")
    def _check_dates(self) -> CatalogQuery:
        if (
            self.start is not None
            and self.end is not None
            and as_utc(self.start) > as_utc(self.end)
        ):
            raise ValueError(f"catalog start {self.start} is after end {self.end}")
        return self

    @property
    def datetime_range(self) -> str | None:
        """The dates as a catalog search takes them: ``START/END`` (``..`` when open), or None."""
        if self.start is None and self.end is None:
            return None
        start = ".." if self.start is None else as_utc(self.start).isoformat()
        end = ".." if self.end is None else as_utc(self.end).isoformat()
        return f"{start}/{end}"


class ScheduleSpec(StrictModel):
    """When the job runs: a cron expression in UTC, or a fixed interval.

    ``start`` anchors the schedule: periods ending after it are due (default:
    when the job was added). An interval is ``"6h"``, ``"1d"``, ``"30m"``,
    ``"2w"`` or a number of seconds.
    """

    cron: str | None = None
    interval: timedelta | None = None
    start: datetime | None = None

    @field_validator("interval", mode="before")
    @classmethod
    def _parse_interval(cls, value: object) -> object:
        if isinstance(value, str):
            match = _INTERVAL.match(value)
            if match:
                return timedelta(seconds=int(match.group(1)) * _INTERVAL_UNITS[match.group(2)])
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a valid cron expression; use five fields "
                "'minute hour day-of-month month day-of-week', e.g. '0 6 * * *' (UTC)"
            )
        return value

    @model_validator(mode="after")
    def _check_one_kind(self) -> ScheduleSpec:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of 'cron: \"0 6 * * *\"' or 'interval: 6h'")
        if self.interval is not None and self.interval < timedelta(seconds=1):
            raise ValueError(f"interval must be at least 1 second, got {self.interval}")
        return self


class JobSpec(StrictModel):
    """A scheduled, incremental change-detection job."""

    name: str = Field(description="letters, digits, '.', '_' or '-'; at most 64 characters")
    area: AreaSpec
    catalog: CatalogQuery = CatalogQuery()
    model: str = "forest"
    schedule: ScheduleSpec
    output_dir: Path
    misfire: Literal["once", "each"] = Field(
        default="once",
        description="missed periods: 'once' runs once for all of them, 'each' once per period",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"job name {value!r} must start with a letter or digit and hold only "
                "letters, digits, '.', '_' or '-' (at most 64 characters)"
            )
        return value

    def spec_hash(self) -> str:
        """SHA-256 of the spec's canonical JSON form (key order and formatting ignored)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_job_spec(path: str | Path) -> JobSpec:
    """Read and validate a job spec YAML file; relative paths are resolved from its folder.

    Raises
    ------
    ConfigError
        When the file is missing, not YAML, or not a valid spec; the message
        lists each problem by its key.
    """
    path = Path(path)
    spec = load_yaml_config(JobSpec, path)
    return resolve_relative_paths(spec, path.resolve().parent)


def job_spec_from_json(text: str, source: str) -> JobSpec:
    """Rebuild a spec stored as JSON (by the state store)."""
    return validate_mapping(JobSpec, json.loads(text), source)


def resolve_relative_paths(spec: JobSpec, base: Path) -> JobSpec:
    """Make the output folder, regions file and local catalog absolute, relative to ``base``."""
    area = spec.area
    if area.regions is not None and not area.regions.is_absolute():
        area = area.model_copy(update={"regions": base / area.regions})
    catalog = spec.catalog
    location = catalog.catalog
    if location is not None and "://" not in location and not Path(location).is_absolute():
        catalog = catalog.model_copy(update={"catalog": str(base / location)})
    output_dir = spec.output_dir if spec.output_dir.is_absolute() else base / spec.output_dir
    return spec.model_copy(update={"area": area, "catalog": catalog, "output_dir": output_dir})
