"""Model cards exported as STAC MLM Items: every shipped model, and the card mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest
import torch
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.mlm import AssetGeneralMLMExtension, MLMExtension

from geoseg.cli import main
from geoseg.io.checkpoint import read_card
from geoseg.io.checksums import sha256_file
from geoseg.models.card import ModelCard
from geoseg.models.loading import build_from_card, resolve_model_dir, shipped_models
from geoseg.models.stac_mlm import mlm_item
from tests.predict_fixtures import card_data

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"


@pytest.mark.parametrize("name", shipped_models())
def test_export_stac_of_every_shipped_model(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"  # created by the command
    main(["models", "export-stac", name, "--out", str(out)])
    assert f"wrote {out / f'{name}.stac.json'}" in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == [
        f"{name}.card.json",
        f"{name}.safetensors",
        f"{name}.stac.json",
    ]
    data = json.loads((out / f"{name}.stac.json").read_text(encoding="utf-8"))
    item = pystac.Item.from_dict(data)
    assert item.to_dict(include_self_link=False, transform_hrefs=False) == data
    assert MLM_SCHEMA in item.stac_extensions and MLMExtension.has_extension(item)
    card = read_card(resolve_model_dir(name))
    mlm = MLMExtension.ext(item)
    assert item.properties["mlm:name"] == name  # (MLMExtension.name is the prefix)
    assert mlm.architecture.startswith(card.architecture)
    assert mlm.tasks == [
        "semantic-segmentation" if card.task == "semantic" else "instance-segmentation"
    ]
    assert (mlm.framework, mlm.framework_version) == ("pytorch", torch.__version__)
    parameters = sum(parameter.numel() for parameter in build_from_card(card).parameters())
    assert mlm.total_parameters == parameters > 10_000
    assert mlm.accelerator == "cuda" and mlm.accelerator_constrained is False
    (model_input,) = mlm.input
    assert model_input.bands == card.band_names
    assert model_input.input.shape == [-1, len(card.bands), card.tile_size, card.tile_size]
    assert model_input.input.dim_order == ["batch", "bands", "height", "width"]
    (output,) = mlm.output
    assert output.classes is not None
    assert [(c.value, c.title, c.color_hint) for c in output.classes] == [
        (spec.id, spec.name, spec.color[1:].upper()) for spec in card.classes
    ]
    assert output.tasks == mlm.tasks
    weights = item.assets["weights"]
    assert "mlm:model" in (weights.roles or []) and weights.href == f"{name}.safetensors"
    assert AssetGeneralMLMExtension.ext(weights).artifact_type == "safetensors"
    assert FileExtension.ext(weights).checksum == "1220" + card.weights_sha256
    assert sha256_file(out / weights.href) == card.weights_sha256  # the copy is the weights
    assert item.assets["card"].href == f"{name}.card.json"
    assert ModelCard.model_validate_json((out / f"{name}.card.json").read_text()) == card
    if card.scaling.method == "scene_percentile":  # a stretch per scene: no fixed numbers
        assert data["properties"]["mlm:input"][0]["value_scaling"] is None
        assert model_input.pre_processing_function is not None


def test_a_standardizing_card_gets_a_z_score_per_band_and_the_classification_names() -> None:
    scaling = {
        "units": "reflectance",
        "method": "standardize",
        "mean": [0.1, 0.2, 0.3, 0.4],
        "std": [0.5, 0.6, 0.7, 0.8],
    }
    classes = [{"id": 3, "name": "open water", "color": "#00aaff"}]
    card = ModelCard.model_validate(card_data(scaling=scaling, classes=classes))
    created = datetime(2026, 1, 1, tzinfo=UTC)
    data = mlm_item(
        card,
        weights_href="w.safetensors",
        total_parameters=7,
        framework_version="2.0",
        created=created,
    )
    properties = data["properties"]
    assert properties["mlm:input"][0]["value_scaling"] == [
        {"type": "z-score", "mean": mean, "stddev": std}
        for mean, std in zip(scaling["mean"], scaling["std"], strict=True)
    ]
    assert properties["mlm:input"][0]["pre_processing_function"] is None
    assert properties["datetime"] == "2026-01-01T00:00:00Z" and data["geometry"] is None
    (output,) = properties["mlm:output"]
    assert output["result"]["shape"] == [-1, 1, 64, 64]
    assert output["classification:classes"] == [
        {
            "value": 3,
            "name": "open_water",
            "title": "open water",
            "description": "open water",
            "color_hint": "00AAFF",
        }
    ]
    assert "card" not in data["assets"]
    item = pystac.Item.from_dict(data)
    assert ClassificationExtension.get_schema_uri() not in item.stac_extensions  # inside mlm


def test_export_of_an_unknown_model_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "export-stac", "atlantis", "--out", str(tmp_path / "x")])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err.strip()
    assert error.startswith("geoseg: error: ") and "\n" not in error
    assert not (tmp_path / "x").exists()
