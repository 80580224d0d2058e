"""Arguments the commands share, defined once, and the loaders that read them."""
from __future__ import annotations

import argparse
from pathlib import Path

from advisor import CATALOG_PATH, MEASUREMENTS_DIR


def add_catalog_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", type=Path, default=CATALOG_PATH, metavar="PATH",
                   help="GPU catalog YAML (default: the shipped gpu_catalog.yaml)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--data, --catalog and --cache-dir: what the fitted models are made from."""
    p.add_argument("--data", type=Path, default=MEASUREMENTS_DIR, metavar="DIR",
                   help="folder of measurement *.jsonl files (default: the shipped data)")
    add_catalog_arg(p)
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="model cache folder (default $ZIMAGE_ADVISOR_CACHE or "
                   "~/.cache/zimage-advisor)")


def add_format_arg(p: argparse.ArgumentParser, choices=("table", "json")) -> None:
    p.add_argument("--format", choices=choices, default=choices[0],
                   help=f"output format (default {choices[0]})")


def load_models(args: argparse.Namespace, refit: bool = False):
    """The fitted models for --data, --catalog and --cache-dir (cached on disk)."""
    from advisor.cache import load_models as load

    return load(args.data, args.catalog, args.cache_dir, refit=refit)
