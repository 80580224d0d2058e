"""Capacity-planning advisor for serving Z-Image-Turbo.

Planning code only: nothing in this package imports torch at module level.
"""
from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
ARCH_DIR = DATA_DIR / "zimage_turbo"
MEASUREMENTS_DIR = DATA_DIR / "measurements"
CATALOG_PATH = REPO_ROOT / "gpu_catalog.yaml"
