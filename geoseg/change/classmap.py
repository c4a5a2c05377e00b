"""Mapping raster codes to classes: a validated :class:`ClassMap` and built-in presets.

A class map says which raw raster codes belong to which class. Each class has an
``id`` (0-254), a ``name`` and an ``is_forest`` flag (the deforestation rule is
"a forest class at BEFORE and a non-forest class at AFTER"). Codes are single
values or inclusive ranges written ``"first..last"``. Codes that no class lists,
and the raster's nodata, are *excluded* (class id 255, :data:`geoseg.labels.LABEL_NODATA`)
and counted apart.

A class map is read from YAML (``geoseg change --class-map MAP.yaml``)::

    classes:
      - {id: 0, name: non-forest, codes: ["0..30"]}
      - {id: 1, name: forest, codes: ["31..100"], is_forest: true}

Built-in presets, usable by name wherever a map file is accepted:

``prodes``
    INPE PRODES year-of-clearing codes: 1 forest, 11/16/17/27/29/33 cleared in
    2012/2017/2018/2019/2020/2021 (one class each, ids 11..33 keep the codes),
    32 clouds (excluded).
``hansen-loss``
    Hansen Global Forest Change loss year: 0 no loss (id 100, counts as forest:
    "not cleared"), 1..23 loss in 2001..2023 (ids 101..123). Pair it with
    ``hansen-treecover30`` at BEFORE: deforestation is then loss inside forest.
``hansen-treecover30``
    Hansen tree cover 2000 in percent: 0..30 non-forest (id 0), 31..100 forest (id 1).
``forest``
    Binary forest maps: 0 non-forest, 1 forest.

Model outputs of ``geoseg predict`` (uint8 labels, nodata 255, class names in
the ``GEOSEG_CLASS_NAMES`` tag as JSON ``{"id": "name"}``) need no map: the
identity map built by :func:`identity_class_map` is used.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator

from geoseg.config import StrictModel, load_yaml_config
from geoseg.errors import ConfigError, InputError
from geoseg.labels import (
    CLASS_NAMES_TAG,
    LABEL_NODATA,
    MAX_CLASS_ID,
    forest_class_ids,
    parse_class_names,
)

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")


class ClassSpec(StrictModel):
    """One class: its id in the output, its name, and whether it counts as forest."""

    id: int = Field(ge=0, le=MAX_CLASS_ID)
    name: str = Field(min_length=1)
    is_forest: bool = False


class ClassRule(ClassSpec):
    """A class and the raw codes that belong to it (``5`` or ``"1..23"``)."""

    codes: tuple[int | str, ...] = Field(min_length=1)

    @field_validator("codes")
    @classmethod
    def _check_codes(cls, codes: tuple[int | str, ...]) -> tuple[int | str, ...]:
        for code in codes:
            parse_code_range(code)
        return codes

    def code_ranges(self) -> list[tuple[int, int]]:
        """The codes as inclusive ``(first, last)`` ranges."""
        return [parse_code_range(code) for code in self.codes]


class ClassMap(StrictModel):
    """Codes -> classes for one raster; unlisted codes are excluded."""

    classes: tuple[ClassRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique(self) -> ClassMap:
        ids = [rule.id for rule in self.classes]
        duplicates = sorted({value for value in ids if ids.count(value) > 1})
        if duplicates:
            raise ValueError(f"class ids listed twice: {duplicates}; give each class one entry")
        intervals = sorted(
            (first, last, rule.id) for rule in self.classes for first, last in rule.code_ranges()
        )
        for (_, last, class_id), (next_first, _, next_id) in itertools.pairwise(intervals):
            if next_first <= last:
                raise ValueError(
                    f"code {next_first} belongs to classes {class_id} and {next_id}; "
                    "each code may map to one class only"
                )
        return self

    def specs(self) -> tuple[ClassSpec, ...]:
        """The classes without their codes."""
        return tuple(
            ClassSpec(id=rule.id, name=rule.name, is_forest=rule.is_forest) for rule in self.classes
        )


def parse_code_range(code: int | str) -> tuple[int, int]:
    """``5`` -> ``(5, 5)``; ``"1..23"`` -> ``(1, 23)``.

    Raises
    ------
    ValueError
        For anything else, or a range whose end is before its start.
    """
    if isinstance(code, int):
        return (code, code)
    text = code.strip()
    if text.lstrip("-").isdigit():
        return (int(text), int(text))
    match = _RANGE.match(text)
    if match is None:
        raise ValueError(f"code {code!r} is neither an integer nor a range like '1..23'")
    first, last = int(match.group(1)), int(match.group(2))
    if last < first:
        raise ValueError(f"code range {code!r} ends before it starts")
    return (first, last)


def _rule(class_id: int, name: str, codes: Sequence[int | str], *, forest: bool) -> ClassRule:
    return ClassRule(id=class_id, name=name, codes=tuple(codes), is_forest=forest)


def _prodes() -> ClassMap:
    years = {11: 2012, 16: 2017, 17: 2018, 27: 2019, 29: 2020, 33: 2021}
    rules = [_rule(1, "forest", [1], forest=True)]
    rules += [_rule(code, f"cleared {year}", [code], forest=False) for code, year in years.items()]
    return ClassMap(classes=tuple(rules))


def _hansen_loss() -> ClassMap:
    rules = [_rule(100, "no loss", [0], forest=True)]
    rules += [
        _rule(100 + year, f"loss {2000 + year}", [year], forest=False) for year in range(1, 24)
    ]
    return ClassMap(classes=tuple(rules))


def _hansen_treecover30() -> ClassMap:
    return ClassMap(
        classes=(
            _rule(0, "non-forest", ["0..30"], forest=False),
            _rule(1, "forest", ["31..100"], forest=True),
        )
    )


def _forest() -> ClassMap:
    return ClassMap(
        classes=(_rule(0, "non-forest", [0], forest=False), _rule(1, "forest", [1], forest=True))
    )


PRESETS = {
    "prodes": _prodes,
    "hansen-loss": _hansen_loss,
    "hansen-treecover30": _hansen_treecover30,
    "forest": _forest,
}


def preset_class_map(name: str) -> ClassMap:
    """The built-in class map ``name`` (see the module docstring)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown class map preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def load_class_map(source: str | Path) -> ClassMap:
    """A preset by name, else a YAML class map file."""
    if str(source) in PRESETS:
        return preset_class_map(str(source))
    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"{path}: no such class map file, and not a preset (presets: {sorted(PRESETS)})"
        )
    return load_yaml_config(ClassMap, path)


def identity_class_map(names: dict[int, str], forest_ids: Iterable[int] = ()) -> ClassMap:
    """Each code is its own class, named by ``names`` (e.g. a ``geoseg predict`` output)."""
    forest = set(forest_ids)
    rules = [
        _rule(code, name, [code], forest=code in forest)
        for code, name in sorted(names.items())
        if code != LABEL_NODATA
    ]
    if not rules:
        raise ConfigError("an identity class map needs at least one class name")
    return ClassMap(classes=tuple(rules))


def class_names_from_tags(tags: dict[str, str], source: str) -> dict[int, str] | None:
    """Class names from a raster's ``GEOSEG_CLASS_NAMES`` tag (None when absent).

    Raises
    ------
    ConfigError
        The tag is not valid (:func:`geoseg.labels.parse_class_names`); the
        message offers ``--class-map`` as the other way out.
    """
    text = tags.get(CLASS_NAMES_TAG)
    if text is None:
        return None
    try:
        return parse_class_names(text, source)
    except InputError:
        raise ConfigError(
            f"{source}: tag {CLASS_NAMES_TAG} is not JSON like {{'0': 'water'}}; "
            "fix the tag or pass --class-map"
        ) from None


def class_map_for_raster(class_map: ClassMap | None, tags: dict[str, str], source: str) -> ClassMap:
    """``class_map``, else the identity map named by the raster's ``GEOSEG_CLASS_NAMES`` tag.

    Raises
    ------
    ConfigError
        When there is neither.
    """
    if class_map is not None:
        return class_map
    names = class_names_from_tags(tags, source)
    if names is None:
        raise ConfigError(
            f"{source}: the raster has no class names (tag {CLASS_NAMES_TAG}); pass "
            f"--class-map with a YAML file or a preset ({', '.join(sorted(PRESETS))})"
        )
    return identity_class_map(names, forest_class_ids(names))


def code_lookup(class_map: ClassMap, dtype: np.dtype[np.generic]) -> NDArray[np.uint8] | None:
    """A table ``code -> class id`` for 8/16-bit unsigned codes (None for other types)."""
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        return None
    size = 1 << (8 * dtype.itemsize)
    table = np.full(size, LABEL_NODATA, dtype=np.uint8)
    for rule in class_map.classes:
        for first, last in rule.code_ranges():
            low, high = max(first, 0), min(last, size - 1)
            if low <= high:
                table[low : high + 1] = rule.id
    return table


def apply_class_map(
    codes: NDArray[Any],
    class_map: ClassMap,
    valid: NDArray[np.bool_] | None = None,
) -> NDArray[np.uint8]:
    """Class ids of ``codes`` (uint8; 255 where excluded or not ``valid``).

    Parameters
    ----------
    codes
        Raw raster values, any integer dtype.
    class_map
        Which codes belong to which class.
    valid
        Pixels holding data; the others are excluded.
    """
    table = code_lookup(class_map, codes.dtype)
    if table is not None:
        ids: NDArray[np.uint8] = table[codes]
    else:
        ids = np.full(codes.shape, LABEL_NODATA, dtype=np.uint8)
        for rule in class_map.classes:
            for first, last in rule.code_ranges():
                ids[(codes >= first) & (codes <= last)] = rule.id
    if valid is not None:
        ids = np.where(valid, ids, np.uint8(LABEL_NODATA)).astype(np.uint8, copy=False)
    return ids
