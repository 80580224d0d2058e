"""`advisor check-claim`: is a published throughput or latency figure physically possible?"""
from __future__ import annotations

import argparse
import json
import textwrap

from advisor.commands.common import add_config_args, add_data_args, add_format_arg, models_from_args
from advisor.contract import PRECISIONS, shape_label
from advisor.errors import AdvisorError

WIDTH = 100


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check-claim", help="is a claimed speed physically possible on a GPU?",
        description="Check a claim like 'an A100 40GB makes 3.27 images/s at 1024x1024, 8 steps, "
        "batch 8': implied TFLOP/s and MFU against the catalog's dense peak, the weights' "
        "minimum resident memory (with offload and quantization options) against the card or "
        "the claimed memory, and the fitted prediction. Verdict: impossible, implausible or "
        "plausible, with reasons.",
    )
    p.add_argument("--gpu", required=True, help="catalog id, e.g. a100-pcie-40gb")
    add_config_args(p)
    speed = p.add_mutually_exclusive_group(required=True)
    speed.add_argument("--seconds-per-image", type=float, help="claimed seconds per image")
    speed.add_argument("--images-per-second", type=float, help="claimed images per second")
    p.add_argument("--vram-gb", type=float, help="claimed GPU memory used, GB")
    p.add_argument("--precision", metavar="P",
                   help="claimed precision (default: not stated, every precision counts): one "
                   f"the advisor models ({', '.join(PRECISIONS)}), or int8 (int8 weights and "
                   "matmuls) or int4 (4-bit weights), which count in the compute and memory "
                   "checks only (advisor.claims.UNMODELLED)")
    add_format_arg(p)
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advisor.catalog import load_catalog
    from advisor.claims import check_claim, measured_mfu_ceiling

    catalog = load_catalog(args.catalog)
    gpu = catalog.get(args.gpu)
    models, note = _models(args)
    result = check_claim(
        gpu, args.height, args.width, steps=args.steps, batch=args.batch,
        seconds_per_image=args.seconds_per_image, images_per_second=args.images_per_second,
        vram_gb=args.vram_gb, precision=args.precision, cfg=args.cfg,
        caption_tokens=args.caption_tokens, models=models, models_note=note,
        mfu_ceiling=measured_mfu_ceiling(args.data, args.precision),
    )
    print(json.dumps(result, indent=2) if args.format == "json" else format_table(result))
    return 0


def _models(args):
    """The fitted models, or None and why (the check runs without them)."""
    try:
        return models_from_args(args), ""
    except AdvisorError as exc:
        return None, f"fitted models unavailable ({exc})"


def format_table(result: dict) -> str:
    c, a = result["claim"], result["arithmetic"]
    claim = (f"Claim: {c['gpu_name']} ({c['gpu']}), {shape_label(c['height'], c['width'])}, "
             f"{c['steps']} "
             f"steps, batch {c['batch']}, {c['precision'] or 'precision not stated'}: "
             f"{c['images_per_second']:.3g} img/s ({c['seconds_per_image']:.3g} s per image)")
    lines = textwrap.wrap(claim, WIDTH, subsequent_indent="  ") + [
        f"Verdict: {result['verdict'].upper()}",
        "",
        f"  implied compute   {a['implied_tflops']:>9.1f} TFLOP/s  "
        f"({a['tflops_per_image']['total']:.1f} TFLOP per image)",
        f"  dense peak        {a['peak_tflops']:>9.1f} TFLOP/s  ({a['peak_precision']}, catalog)",
        f"  MFU               {a['mfu']:>9.1%}          (ceiling {a['mfu_ceiling']:.0%})",
        f"  weights resident  {a['min_resident_gb']:>9.1f} GB       "
        f"(memory budget {a['memory_budget_gb']:g} GB)",
        "",
        "Reasons:",
    ]
    for reason in result["reasons"]:
        lines += textwrap.wrap(reason, WIDTH, initial_indent="  - ", subsequent_indent="    ")
    return "\n".join(lines)
