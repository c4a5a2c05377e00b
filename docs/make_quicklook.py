"""Copy the quicklook of ``make run-default`` into docs/, reduced to a 256-colour palette.

Usage: ``make run-default && .venv/bin/python docs/make_quicklook.py``. The class
colours of the model card are put in the palette first, so the class map and its
legend keep their exact colours; the true-colour half gets the remaining colours.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "out" / "zion_landcover.png"
TARGET = ROOT / "docs" / "quicklook_zion.png"
CARD = ROOT / "geoseg" / "models" / "weights" / "landcover-landsat" / "card.json"


def main() -> None:
    """Write docs/quicklook_zion.png from out/zion_landcover.png."""
    classes = json.loads(CARD.read_text(encoding="utf-8"))["classes"]
    image = Image.open(SOURCE).convert("RGB")
    exact = [tuple(int(spec["color"][k : k + 2], 16) for k in (1, 3, 5)) for spec in classes]
    exact += [(value, value, value) for value in range(0, 256, 8)] + [(255, 255, 255)]
    photo = image.quantize(colors=200, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    flat_photo = photo.getpalette() or []
    extra = [tuple(flat_photo[i : i + 3]) for i in range(0, 600, 3)]
    palette = (exact + [colour for colour in extra if colour not in exact])[:256]
    flat = [value for colour in palette for value in colour]
    holder = Image.new("P", (1, 1))
    holder.putpalette(flat + [0] * (768 - len(flat)))
    image.quantize(palette=holder, dither=Image.Dither.NONE).save(TARGET, optimize=True)
    print(f"wrote {TARGET} ({TARGET.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
