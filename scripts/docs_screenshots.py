"""Copy the browser test's page screenshots into docs/screenshots as palette PNGs.

    python -m pytest tests/test_app_browser.py && python scripts/docs_screenshots.py

The test saves Chromium's own PNGs (test-artifacts/screenshots/<page>-<width>.png); 64 colours
keep the text and flat colours of a page and make a shot ~0.1-0.2 MB instead of ~0.5-1 MB.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "test-artifacts" / "screenshots"
TARGET = ROOT / "docs" / "screenshots"
COLORS = 64


def main() -> int:
    shots = sorted(SOURCE.glob("*.png"))
    if not shots:
        print(f"no screenshots in {SOURCE}: run `python -m pytest tests/test_app_browser.py` "
              "first", file=sys.stderr)
        return 1
    TARGET.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        with Image.open(shot) as image:
            small = image.convert("RGB").quantize(COLORS, method=Image.Quantize.MEDIANCUT)
        small.save(TARGET / shot.name, optimize=True)
        print(f"{TARGET.relative_to(ROOT) / shot.name}: "
              f"{(TARGET / shot.name).stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
