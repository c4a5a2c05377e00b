"""The out-of-domain check on real scenes: quiet on training scenes, loud on wrong units.

Scenes are read on the fixed sample lattice that ``geoseg predict`` uses
(64 windows of at most 128 px), scaled as the model scales them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.models.card import InputScaling, ModelCard
from geoseg.models.loading import load_model, resolve_model_dir
from geoseg.predict.domain import (
    DomainFinding,
    compare_domain,
    ground_pixel_size_m,
    scaled_sample_values,
)
from geoseg.predict.preprocess import sample_windows, scene_statistics
from geoseg.predict.sources import FileSource
from geoseg.training.config import load_train_config
from geoseg.training.domain import training_domain
from geoseg.training.pipeline import prepare_scenes
from geoseg.training.sampling import prepare_scene
from workflows.predict import DOMAIN_TAG
from workflows.train_defaults import CONFIG_DIR

BANDS = ["blue", "green", "red", "nir"]
ZION = "zion/zion_landsat8_20150818_b2345.tif"
CHIAPAS = (
    "chiapas_twodate/LE70220492002106EDC00_stack.gtif",
    "chiapas_twodate/LE70220491999322EDC01_stack.gtif",
)
TOA_SCALE, TOA_OFFSET = 2e-5, -0.1
"""Landsat-8 Collection 1 DN to TOA reflectance (rounded), for a ``standardize`` card."""


def _findings(card: ModelCard, source: FileSource, sensor: str = "") -> tuple[DomainFinding, ...]:
    positions = [source.band_names.index(name) for name in BANDS]
    samples = []
    for window in sample_windows(source.grid):
        values, valid = source.read(window)
        samples.append((values[positions], valid))
    statistics = None
    if card.scaling.method == "scene_percentile":
        statistics = scene_statistics(source.label, samples, card.scaling.percentiles)
    assert card.training_domain is not None
    return compare_domain(
        card.training_domain,
        scaled_sample_values(samples, card.scaling, statistics),
        pixel_size_m=ground_pixel_size_m(source.grid),
        sensor=sensor,
    )


def _by_index(path: Path, **kwargs: list[float]) -> FileSource:
    return FileSource.open(path, band_map={name: i for i, name in enumerate(BANDS, 1)}, **kwargs)


@pytest.mark.parametrize("name", ["landcover-landsat", "forest"])
def test_shipped_domain_is_recomputed_from_the_training_windows(
    name: str, shared_data: Path
) -> None:
    config = load_train_config(CONFIG_DIR / f"{name}.yaml")
    domain = training_domain(prepare_scenes(config, shared_data), BANDS)
    assert load_model(name).card.training_domain == domain


def _landsat_only(card: ModelCard) -> ModelCard:
    """``card`` as if trained on 30 m Landsat scenes only (the earlier ``forest-landsat``)."""
    assert card.training_domain is not None
    domain = card.training_domain.model_copy(
        update={"pixel_sizes_m": [30.0], "sensors": ["landsat-7", "landsat-8"]}
    )
    return card.model_copy(update={"training_domain": domain})


def test_training_scenes_stay_quiet(shared_data: Path) -> None:
    card = load_model("forest").card
    assert _findings(card, _by_index(shared_data / ZION), "Landsat-8 OLI") == ()
    for path in CHIAPAS:
        assert _findings(card, _by_index(shared_data / path), "Landsat-7 ETM+") == ()


def test_sentinel2_scene_fires_on_pixel_size_and_sensor(shared_data: Path) -> None:
    path = shared_data / "sites/mlr3spatial_leipzig_sentinel2_2021/image.tif"
    source = FileSource.open(path)
    findings = _findings(_landsat_only(load_model("forest").card), source, "Sentinel-2 MSI")
    # scene_percentile scaling is blind to linear units by design: no band finding
    assert [finding.code for finding in findings] == ["pixel_size", "sensor"]


def test_other_units_fire_with_a_standardize_card(shared_data: Path, tmp_path: Path) -> None:
    """A card fitted to Zion as TOA reflectance: raw DN and reflectance x 10000 fire."""
    config = load_train_config(CONFIG_DIR / "forest-landsat.yaml")
    zion_spec = config.scenes[0]
    reflectance = _by_index(shared_data / ZION, scales=[TOA_SCALE] * 4, offsets=[TOA_OFFSET] * 4)
    values = np.concatenate(
        [
            data[:, valid]
            for data, valid in (reflectance.read(w) for w in sample_windows(reflectance.grid))
        ],
        axis=1,
    )
    scaling = InputScaling(
        units="TOA reflectance (0-1)",
        method="standardize",
        mean=[float(v) for v in values.mean(axis=1)],
        std=[float(v) for v in values.std(axis=1)],
    )
    scene = prepare_scene(zion_spec, BANDS, [0, 1], scaling, shared_data)
    domain = training_domain([dataclasses.replace(scene, source=reflectance)], BANDS)
    card = load_model("forest").card.model_copy(
        update={"scaling": scaling, "training_domain": domain}
    )
    assert _findings(card, reflectance, "Landsat-8 OLI") == ()
    raw = _findings(card, _by_index(shared_data / ZION), "Landsat-8 OLI")
    assert [(f.code, f.band) for f in raw] == [("band_values", name) for name in BANDS]
    assert all("lies outside" in finding.message for finding in raw)
    leipzig = shared_data / "sites/mlr3spatial_leipzig_sentinel2_2021/image.tif"
    unscaled = FileSource.open(leipzig, scales=[1.0] * 7, offsets=[0.0] * 7)
    codes = [f.code for f in _findings(card, unscaled)]
    assert codes.count("band_values") == 4


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::geoseg.predict.pixel_size.PixelSizeWarning")
def test_predict_cli_warns_and_tags_the_output(shared_data: Path, tmp_path: Path) -> None:
    site = shared_data / "sites/eolearn_slovenia_sentinel2_2015/image_20150711.tif"
    out = tmp_path / "slovenia.tif"
    # the shipped forest model read at its own pixel size, as if trained on 30 m Landsat only
    landsat_only = tmp_path / "forest-landsat-only"
    shutil.copytree(resolve_model_dir("forest"), landsat_only)
    card = _landsat_only(load_model("forest").card).model_copy(
        update={"resampling": "native", "aliases": []}
    )
    (landsat_only / "card.json").write_text(card.model_dump_json(indent=2))
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "predict",
            str(site),
            "--model",
            str(landsat_only),
            "--bands",
            "blue=2,green=3,red=4,nir=8",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--allow-pixel-size-mismatch",  # 10 m for a 30 m model: refused otherwise
        ],
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("geoseg: warning: ")]
    assert len(warnings) == 2
    assert "pixel size 10 m" in warnings[0] and "sentinel-2" in warnings[1]
    with rasterio.open(out) as written:
        recorded = json.loads(written.tags()[DOMAIN_TAG])
    assert [entry["code"] for entry in recorded] == ["pixel_size", "sensor"]
    # a training scene: no warning, an empty record
    quiet_out = tmp_path / "chiapas.tif"
    result = runner.invoke(
        cli,
        [
            "predict",
            str(shared_data / CHIAPAS[0]),
            "--model",
            "forest",
            "--bands",
            "blue=1,green=2,red=3,nir=4",
            "--out",
            str(quiet_out),
            "--device",
            "cpu",
            "--allow-pixel-size-mismatch",  # 10 m for a 30 m model: refused otherwise
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    with rasterio.open(quiet_out) as written:
        assert json.loads(written.tags()[DOMAIN_TAG]) == []
