"""Model aliases: a shipped model found by another name, and runs saying which name was asked."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from distributed import Client
from pydantic import ValidationError

import workflows.predict
from geoseg.cli import cli
from geoseg.errors import ModelError
from geoseg.io.checkpoint import read_card
from geoseg.labels import MODEL_TAG
from geoseg.models import loading
from geoseg.models.card import ModelCard
from geoseg.models.loading import (
    alias_notice,
    model_name,
    open_model,
    resolve_model_dir,
    shipped_aliases,
)
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from tests.conftest import write_geotiff
from tests.predict_fixtures import card_data, make_model_dir
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows.predict import REQUESTED_TAG, predict_file
from workflows.staging import model_info


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary shipped folder: ``forest`` (alias ``forest-landsat``) and ``landcover``."""
    root = tmp_path / "weights"
    make_model_dir(root / "forest", name="forest", aliases=["forest-landsat"])
    make_model_dir(root / "landcover", name="landcover")
    monkeypatch.setattr(loading, "SHIPPED_DIR", root)
    return root


def test_an_alias_finds_its_model(shipped: Path) -> None:
    assert shipped_aliases() == {"forest-landsat": "forest"}
    assert resolve_model_dir("forest-landsat") == shipped / "forest"
    assert resolve_model_dir("forest") == shipped / "forest"
    assert open_model("forest-landsat").name == "forest"
    with pytest.raises(ModelError, match="shipped models: forest, landcover"):
        resolve_model_dir("forest-sentinel")


def test_the_name_asked_for_and_the_canonical_name(shipped: Path) -> None:
    card = read_card(shipped / "forest")
    by_alias = model_name("forest-landsat", card)
    assert (by_alias.requested, by_alias.canonical, by_alias.alias) == (
        "forest-landsat",
        "forest",
        True,
    )
    assert alias_notice(by_alias) == "model 'forest-landsat' is an alias: it resolves to 'forest'"
    assert not model_name("forest", card).alias
    assert alias_notice(model_name("forest", card)) == ""
    by_directory = model_name(shipped / "forest", card)
    assert (by_directory.canonical, by_directory.alias) == ("forest", False)
    info = model_info("forest-landsat", card)
    assert (info.name, info.requested) == ("forest", "forest-landsat")
    assert model_info("forest", card).requested is None
    # a run asked for by the alias hashes the same model as one by name (same run id)
    assert info.identity() == model_info("forest", card).identity()


def test_an_alias_claimed_twice_is_refused(shipped: Path) -> None:
    make_model_dir(shipped / "forest2", name="forest2", aliases=["forest-landsat"])
    with pytest.raises(ModelError, match="alias 'forest-landsat' is also an alias of"):
        resolve_model_dir("forest-landsat")


def test_an_alias_that_is_another_models_name_is_refused(shipped: Path) -> None:
    make_model_dir(shipped / "zebra", name="zebra", aliases=["landcover"])
    with pytest.raises(ModelError, match="alias 'landcover' is also the name of"):
        shipped_aliases()


@pytest.mark.parametrize("aliases", [["m"], ["a", "a"], [""], ["x/y"]])
def test_cards_refuse_unusable_aliases(aliases: list[str]) -> None:
    with pytest.raises(ValidationError, match="aliases"):
        ModelCard.model_validate(card_data(name="m", aliases=aliases))


def test_models_list_shows_aliases(shipped: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0, result.output
    lines = {line.split("\t")[0]: line for line in result.stdout.splitlines()}
    assert lines["forest"].endswith("\taliases forest-landsat")
    assert "aliases" not in lines["landcover"]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1, threads_per_worker=2) as connected:
        yield connected


def test_predict_by_alias_says_so_and_records_both_names(
    shipped: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = landscape(np.random.default_rng(3), 80, 70)
    scene = write_geotiff(tmp_path / "scene.tif", data, descriptions=DESCRIPTIONS)
    out = tmp_path / "labels.tif"
    monkeypatch.setattr(workflows.predict, "dask_client", lambda _: contextlib.nullcontext(client))
    arguments = ["predict", str(scene), "--model", "forest-landsat", "--out", str(out)]
    result = CliRunner().invoke(cli, [*arguments, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "model 'forest-landsat' is an alias: it resolves to 'forest'" in result.stderr
    with rasterio.open(out) as dataset:
        tags = dataset.tags()
    assert (tags[MODEL_TAG], tags[REQUESTED_TAG]) == ("forest", "forest-landsat")
    by_name = tmp_path / "by-name.tif"
    settings = InferenceSettings(device="cpu")
    predict_file(scene, "forest", settings, PredictOutputs(by_name), client=client, progress=False)
    with rasterio.open(by_name) as dataset:
        assert REQUESTED_TAG not in dataset.tags()
