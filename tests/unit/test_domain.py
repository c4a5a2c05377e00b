"""The training-domain record of the model card and the pure out-of-domain comparison."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from geoseg.models.card import ModelCard, TrainingDomain
from geoseg.models.loading import load_model
from geoseg.predict.domain import (
    DomainRule,
    compare_domain,
    sensor_family,
    weighted_quantiles,
)


def _domain(**changes: Any) -> dict[str, Any]:
    bands = [
        {"name": name, "p1": 0.0, "p50": 0.3, "p99": 1.0, "mean": 0.35, "std": 0.2}
        for name in ("blue", "green", "red", "nir")
    ]
    return {"bands": bands, "pixel_sizes_m": [30.0], "sensors": ["landsat-8"], "pixels": 100}


def _card_data(domain: dict[str, Any]) -> dict[str, Any]:
    card = load_model("forest").card.model_dump()
    return {**card, "training_domain": domain}


def test_shipped_cards_record_their_training_domain() -> None:
    for name in ("forest", "landcover-landsat"):
        domain = load_model(name).card.training_domain
        assert domain is not None
        assert [band.name for band in domain.bands] == ["blue", "green", "red", "nir"]
        assert all(29.0 < size <= 30.0 for size in domain.pixel_sizes_m)
        assert "landsat-8" in domain.sensors
    assert "sentinel-2" in load_model("forest").card.training_domain.sensors  # type: ignore[union-attr]


def test_card_validates_the_training_domain() -> None:
    assert ModelCard.model_validate(_card_data(_domain())).training_domain is not None
    unknown = _domain()
    unknown["histogram"] = [1, 2]
    with pytest.raises(ValidationError, match="histogram"):
        ModelCard.model_validate(_card_data(unknown))
    band_key = _domain()
    band_key["bands"][0]["p95"] = 0.9
    with pytest.raises(ValidationError, match="p95"):
        ModelCard.model_validate(_card_data(band_key))
    disorder = _domain()
    disorder["bands"][1]["p1"] = 0.5
    with pytest.raises(ValidationError, match="p1 <= p50 <= p99"):
        ModelCard.model_validate(_card_data(disorder))
    renamed = _domain()
    renamed["bands"][3]["name"] = "swir16"
    with pytest.raises(ValidationError, match="card's bands"):
        ModelCard.model_validate(_card_data(renamed))
    with pytest.raises(ValidationError, match="pixel sizes"):
        TrainingDomain.model_validate({**_domain(), "pixel_sizes_m": [0.0]})


@pytest.mark.parametrize(
    ("text", "family"),
    [
        ("Landsat-7 ETM+ (LEDAPS surface reflectance)", "landsat-7"),
        ("Landsat-8 OLI (surface reflectance)", "landsat-8"),
        ("Landsat-5 TM", "landsat-5"),
        ("LC08 WRS-2 path 232 row 066", "landsat-8"),
        ("Sentinel-2A MSI L1C", "sentinel-2"),
        ("Sentinel-2 MSI (L2A)", "sentinel-2"),
        ("PlanetScope", "planetscope"),
        ("", ""),
    ],
)
def test_sensor_family(text: str, family: str) -> None:
    assert sensor_family(text) == family


def test_weighted_quantiles_match_numpy_with_equal_weights(rng: np.random.Generator) -> None:
    values = rng.normal(size=1001).astype(np.float32)
    quantiles = (0.01, 0.5, 0.99)
    expected = np.quantile(values, quantiles, method="inverted_cdf")
    got = weighted_quantiles(values, np.ones(values.size), quantiles)
    np.testing.assert_allclose(got, expected)
    # a weight of 3 counts like three copies
    weights = np.where(np.arange(values.size) % 2 == 0, 3.0, 1.0)
    copies = np.concatenate([values, values[::2], values[::2]])
    np.testing.assert_allclose(
        weighted_quantiles(values, weights, quantiles),
        np.quantile(copies, quantiles, method="inverted_cdf"),
    )


def test_compare_domain_quiet_inside_and_firing_outside(rng: np.random.Generator) -> None:
    domain = TrainingDomain.model_validate(_domain())
    inside = rng.uniform(0.0, 1.0, size=(4, 5000)).astype(np.float32)
    assert compare_domain(domain, inside, pixel_size_m=30.0, sensor="Landsat-8 OLI") == ()
    shifted = inside.copy()
    shifted[3] += 5.0  # whole band outside
    # 30% below, 30% above the range: 60% outside, the median inside
    shifted[0] = np.select([np.arange(5000) % 10 < 3, np.arange(5000) % 10 < 6], [-1.0, 2.0], 0.5)
    findings = compare_domain(domain, shifted, pixel_size_m=30.0)
    assert [(f.code, f.band) for f in findings] == [("band_values", "blue"), ("band_values", "nir")]
    assert "median model input 5." in findings[1].message
    assert "60% of the scene's model inputs" in findings[0].message
    # 40% outside and the median inside: quiet
    partial = inside.copy()
    partial[0] = np.where(np.arange(5000) % 5 < 2, 2.0, 0.5)
    assert compare_domain(domain, partial, pixel_size_m=30.0) == ()


def test_compare_domain_pixel_size_and_sensor(rng: np.random.Generator) -> None:
    domain = TrainingDomain.model_validate(_domain())
    values = rng.uniform(0.0, 1.0, size=(4, 100)).astype(np.float32)
    assert compare_domain(domain, values, pixel_size_m=40.0) == ()
    (finding,) = compare_domain(domain, values, pixel_size_m=10.0)
    assert finding.code == "pixel_size" and "3 times" in finding.message
    (finding,) = compare_domain(domain, values, pixel_size_m=30.0, sensor="Sentinel-2B MSI")
    assert finding.code == "sensor" and "sentinel-2" in finding.message
    lenient = DomainRule(max_pixel_size_ratio=4.0)
    assert compare_domain(domain, values, pixel_size_m=10.0, rule=lenient) == ()
