from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from geoseg.cli import main
from geoseg.errors import InputError
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from tests.conftest import write_geotiff
from tests.predict_fixtures import make_model_dir
from workflows.predict import predict_file

DESCRIPTIONS = ["B2_blue", "B3_green", "B4_red", "B5_nir"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


def _good(tmp_path: Path, **kwargs: object) -> Path:
    data = np.random.default_rng(1).integers(0, 5000, (4, 80, 80)).astype(np.uint16)
    options: dict[str, object] = {"nodata": 65535, "descriptions": DESCRIPTIONS}
    options.update(kwargs)
    return write_geotiff(tmp_path / "good.tif", data, **options)  # type: ignore[arg-type]


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere.tif"


def _not_a_raster(tmp_path: Path) -> Path:
    path = tmp_path / "notes.tif"
    path.write_text("this is not a GeoTIFF\n")
    return path


def _truncated(tmp_path: Path) -> Path:
    data = np.random.default_rng(2).integers(0, 5000, (4, 512, 512)).astype(np.uint16)
    path = write_geotiff(tmp_path / "cut.tif", data, descriptions=DESCRIPTIONS, blocksize=128)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 3])
    return path


def _two_bands(tmp_path: Path) -> Path:
    data = np.ones((2, 80, 80), dtype=np.uint16)
    return write_geotiff(tmp_path / "two.tif", data)


def _no_crs(tmp_path: Path) -> Path:
    data = np.ones((4, 80, 80), dtype=np.uint16)
    return write_geotiff(tmp_path / "nocrs.tif", data, crs=None, descriptions=DESCRIPTIONS)  # type: ignore[arg-type]


def _all_nodata(tmp_path: Path) -> Path:
    data = np.full((4, 80, 80), 65535, dtype=np.uint16)
    return write_geotiff(tmp_path / "empty.tif", data, nodata=65535, descriptions=DESCRIPTIONS)


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (_missing, r"nowhere\.tif: no such file"),
        (_not_a_raster, r"notes\.tif: not a readable raster"),
        (_truncated, r"cut\.tif: .*(truncated|not a readable raster)"),
        (_two_bands, r"two\.tif: the model needs bands .* missing"),
        (_no_crs, r"nocrs\.tif: the raster has no CRS"),
        (_all_nodata, r"empty\.tif: no valid pixels"),
    ],
)
def test_bad_input_fails_clearly_without_output(
    tmp_path: Path,
    model_dir: Path,
    make_input: Callable[[Path], Path],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = make_input(tmp_path)
    out = tmp_path / "out" / "labels.tif"
    out.parent.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(source), "--model", str(model_dir), "--out", str(out)])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert pytest.importorskip("re").search(message, error), error
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tile", "64", "--overlap", "40"], "overlap must satisfy"),
        (["--bands", "blue:1"], "NAME=INDEX"),
        (["--device", "tpu"], "Invalid value for '--device'"),
        (["--model", "no-such-model"], "neither a shipped model"),
    ],
)
def test_bad_options_fail_clearly(
    tmp_path: Path,
    model_dir: Path,
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _good(tmp_path)
    out = tmp_path / "labels.tif"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(source), "--model", str(model_dir), "--out", str(out), *arguments])
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_output_directory_is_reported(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _good(tmp_path)
    with pytest.raises(SystemExit):
        main(["predict", str(source), "--model", str(model_dir), "--out", "/no/such/dir/x.tif"])
    assert "/no/such/dir does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1) as connected:
        yield connected


def test_all_nodata_scene_with_a_standardizing_model_is_refused_after_the_run(
    tmp_path: Path, client: Client
) -> None:
    model = make_model_dir(
        tmp_path / "standard",
        scaling={"units": "dn", "method": "standardize", "mean": [0.0] * 4, "std": [1.0] * 4},
    )
    out = tmp_path / "labels.tif"
    with pytest.raises(InputError, match=r"empty\.tif: every pixel is nodata"):
        predict_file(
            _all_nodata(tmp_path),
            model,
            InferenceSettings(),
            PredictOutputs(out),
            client=client,
            progress=False,
        )
    assert not out.exists()
    assert not list(tmp_path.glob(".geoseg-work-*"))


def test_output_over_the_input_is_refused(tmp_path: Path, model_dir: Path) -> None:
    source = _good(tmp_path)
    with pytest.raises(Exception, match="overwrite the input"):
        predict_file(source, model_dir, InferenceSettings(), PredictOutputs(source), progress=False)
