"""PixelNet: shapes, band indices, receptive field, determinism, gradients, bad options."""

from __future__ import annotations

import pytest
import torch

from geoseg.errors import ModelError
from geoseg.models.pixelnet import INDEX_EPSILON, normalized_difference
from geoseg.models.registry import architectures, build_model

INDICES = [[3, 2], [3, 1]]


def _model(context: int, **options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(
        "pixelnet",
        in_channels=4,
        num_classes=2,
        options={"hidden": [8, 8], "context": context, "indices": INDICES, **options},
    ).eval()


def test_registered_and_any_tile_size() -> None:
    assert "pixelnet" in architectures("semantic")
    model = _model(1)
    assert model(torch.rand(3, 4, 37, 50)).shape == (3, 2, 37, 50)


def test_normalized_difference_is_ndvi_like_and_bounded() -> None:
    nir = torch.tensor([0.8, 0.0, -0.2, 5.0])
    red = torch.tensor([0.2, 0.0, 0.3, -5.0])
    index = normalized_difference(nir, red)
    assert index[0] == pytest.approx(0.6 / (1.0 + INDEX_EPSILON))
    assert index[1] == 0.0
    assert torch.all(index.abs() < 1)
    assert index[3] > 0.9


@pytest.mark.parametrize(("context", "reach"), [(0, 0), (1, 1), (2, 2)])
def test_receptive_field(context: int, reach: int) -> None:
    model = _model(context)
    images = torch.rand(1, 4, 16, 16)
    changed = images.clone()
    changed[0, :, 8, 8] += 1.0
    with torch.inference_mode():
        difference = (model(changed) - model(images)).abs().sum(dim=1)[0]
    rows, cols = torch.nonzero(difference > 0, as_tuple=True)
    assert difference[8, 8] > 0
    assert int((rows - 8).abs().max()) == reach
    assert int((cols - 8).abs().max()) == reach


def test_deterministic_for_a_seed() -> None:
    images = torch.rand(2, 4, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(_model(1)(images), _model(1)(images), rtol=0, atol=0)


def test_gradient_reaches_every_parameter() -> None:
    model = _model(1, dropout=0.1).train()
    images = torch.rand(2, 4, 16, 16)
    loss = torch.nn.functional.cross_entropy(model(images), torch.randint(0, 2, (2, 16, 16)))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.any(parameter.grad != 0), name


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"hidden": []}, "hidden"),
        ({"context": -1}, "context"),
        ({"indices": [[3, 3]]}, "indices"),
        ({"indices": [[0, 4]]}, "indices"),
        ({"indices": [[0, 1, 2]]}, "indices"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_options_are_model_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        build_model("pixelnet", in_channels=4, num_classes=2, options=options)
