"""The class-raster contract: what the pixels and tags of a class map mean.

A class raster (``geoseg predict``'s labels, a class-mapped reference map) is
one band of uint8 class ids 0..254; :data:`LABEL_NODATA` (255) marks the pixels
without a class: input nodata, or codes a class map excludes. Its dataset tags
carry the class names (:data:`CLASS_NAMES_TAG`, JSON ``{"id": "name"}``) and
the model that wrote it; its colour table gives each class its ``(r, g, b)``
colour, and a class without one gets :func:`default_colour`.

Pure functions over values: reading and writing the tags and colour tables of
files is :mod:`geoseg.io`'s work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import InputError

LABEL_NODATA = 255
"""Label value of pixels without a class (input nodata, excluded codes); no class may use it."""

MAX_CLASS_ID = LABEL_NODATA - 1
"""The largest class id (class ids are 0..254)."""

CLASS_NAMES_TAG = "GEOSEG_CLASS_NAMES"
"""Dataset tag holding the class names as JSON ``{"<id>": "<name>"}``."""

MODEL_TAG = "GEOSEG_MODEL"
"""Dataset tag naming the model that wrote the raster."""

MODEL_SHA256_TAG = "GEOSEG_MODEL_SHA256"
"""Dataset tag holding the SHA-256 of that model's weights."""

Colour = tuple[int, int, int]
"""An ``(r, g, b)`` colour, each 0-255."""

_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def format_class_names(class_names: Mapping[int, str]) -> str:
    """The :data:`CLASS_NAMES_TAG` value for ``{id: name}`` (ids in ascending order)."""
    return json.dumps({str(key): value for key, value in sorted(class_names.items())})


def forest_class_ids(class_names: Mapping[int, str]) -> list[int]:
    """Ids of the classes that are forest: named ``forest`` or ``forest ...`` (not ``non-forest``).

    The rule the shipped models' class names follow (``forest``; NLCD's ``forest``), so a
    class map written by ``geoseg predict`` says which of its classes are forest.
    """
    return sorted(
        key
        for key, name in class_names.items()
        if name.strip().lower() == "forest" or name.strip().lower().startswith("forest ")
    )


def parse_class_names(text: str, source: str) -> dict[int, str]:
    """Class names ``{id: name}`` from a :data:`CLASS_NAMES_TAG` value.

    Raises
    ------
    InputError
        ``text`` is not a JSON object of integer keys (``source`` names the raster).
    """
    try:
        decoded = json.loads(text)
        return {int(key): str(value) for key, value in decoded.items()}
    except (ValueError, AttributeError, TypeError):
        raise InputError(
            f"{source}: the {CLASS_NAMES_TAG} tag must be JSON like "
            f'{{"1": "forest"}}, got {text[:80]!r}'
        ) from None


def stac_class_name(name: str, class_id: int) -> str:
    """A class name as the STAC classification extension's ``name`` (letters, digits, ``-_``).

    Other characters become ``_``; the name as given goes in ``title``.
    """
    token = re.sub(r"[^0-9A-Za-z_-]+", "_", name).strip("_")
    return token or f"class_{class_id}"


def is_hex_colour(text: str) -> bool:
    """Whether ``text`` is a colour written ``#rrggbb``."""
    return _HEX_COLOUR.match(text) is not None


def hex_colour(text: str) -> Colour:
    """The ``(r, g, b)`` of a ``#rrggbb`` colour."""
    return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))


def default_colour(class_id: int) -> Colour:
    """A stable, distinct colour for a class without one (golden-angle hues)."""
    hue = (class_id * 0.618033988749895) % 1.0
    sector, fraction = divmod(hue * 6.0, 1.0)
    rising, falling = int(255 * fraction), int(255 * (1.0 - fraction))
    table = [
        (255, rising, 0),
        (falling, 255, 0),
        (0, 255, rising),
        (0, falling, 255),
        (rising, 0, 255),
        (255, 0, falling),
    ]
    return table[int(sector) % 6]


def colour_table(colours: Mapping[int, Colour]) -> NDArray[np.uint8]:
    """The ``(256, 4)`` RGBA table of class ids 0..255: opaque where coloured, else clear black."""
    table = np.zeros((256, 4), dtype=np.uint8)
    for class_id, colour in colours.items():
        table[class_id] = (*colour, 255)
    return table


def colours_of_table(table: Mapping[int, Sequence[int]]) -> dict[int, Colour]:
    """``{id: (r, g, b)}`` of a raster's colour table ``{id: (r, g, b, a)}`` (alpha dropped)."""
    return {class_id: (rgba[0], rgba[1], rgba[2]) for class_id, rgba in table.items()}
