"""Arguments the commands share, defined once, and the loaders that read them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from advisor import CATALOG_PATH, MEASUREMENTS_DIR
from advisor.contract import DEFAULT_CAPTION_TOKENS, DEFAULT_STEPS
from advisor.errors import AdvisorError, escaped

MAX_WARNINGS = 20


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


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--height, --width, --batch, --steps, --caption-tokens and --cfg: the shape of a run, with
    the contract's defaults (advisor.contract.Config)."""
    p.add_argument("--height", type=int, required=True, help="image height, px (a multiple of 16)")
    p.add_argument("--width", type=int, required=True, help="image width, px (a multiple of 16)")
    p.add_argument("--batch", type=int, default=1, help="images per batch (default 1)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"denoising steps (default {DEFAULT_STEPS})")
    p.add_argument("--caption-tokens", type=int, default=DEFAULT_CAPTION_TOKENS,
                   help="prompt tokens reaching the transformer, 1..512 (default "
                   f"{DEFAULT_CAPTION_TOKENS}; padded to a multiple of 32)")
    p.add_argument("--cfg", action="store_true",
                   help="classifier-free guidance (guidance_scale > 0: two transformer passes "
                   "a step)")


def add_format_arg(p: argparse.ArgumentParser, choices=("table", "json")) -> None:
    p.add_argument("--format", choices=choices, default=choices[0],
                   help=f"output format (default {choices[0]})")


def models_from_args(args: argparse.Namespace, refit: bool = False):
    """The fitted models for --data, --catalog and --cache-dir (cached on disk), with a warning
    on stderr for each measurement line the fit skipped (file and line)."""
    from advisor.cache import CAPPED_DIR, load_models as load
    from advisor.records import measurement_files

    try:  # regular files within bounds, before the cache hashes them
        measurement_files(args.data)
        if (args.data / CAPPED_DIR).is_dir():
            measurement_files(args.data / CAPPED_DIR)
    except AdvisorError as exc:
        raise AdvisorError(f"--data {exc}") from None
    models = load(args.data, args.catalog, args.cache_dir, refit=refit)
    warn(models.problems)
    return models


def warn(problems: list[str]) -> None:
    """Each problem as a `warning:` line on stderr (the first MAX_WARNINGS, then a count)."""
    for problem in problems[:MAX_WARNINGS]:
        print(f"warning: {escaped(problem)}", file=sys.stderr)
    if len(problems) > MAX_WARNINGS:
        print(f"warning: ... and {len(problems) - MAX_WARNINGS} more", file=sys.stderr)
