"""`advisor workload`: parameters, weight sizes and FLOPs of one Z-Image-Turbo request."""
from __future__ import annotations

import argparse
import json

from advisor.commands.common import add_config_args, add_format_arg
from advisor.contract import shape_label


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "workload",
        help="parameters, weight sizes and FLOPs for an image size",
        description="Analytic Z-Image-Turbo cost model from the shipped architecture configs: "
        "parameters, weight bytes per precision, and FLOPs per stage (text encode, denoise, "
        "VAE decode) per image and per batch.",
    )
    add_config_args(p)
    add_format_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from advisor.workload import workload_summary

    summary = workload_summary(
        args.height, args.width, batch=args.batch, steps=args.steps,
        caption_tokens=args.caption_tokens, cfg=args.cfg,
    )
    print(json.dumps(summary, indent=2) if args.format == "json" else format_table(summary))
    return 0


def format_table(s: dict) -> str:
    per_image, per_batch = s["tflops_per_image"], s["tflops_per_batch"]
    per_forward = s["transformer_tflops_per_forward"]
    guidance = "CFG (2 forwards a step)" if s["cfg"] else "no CFG"
    lines = [
        f"Z-Image-Turbo workload: {shape_label(s['height'], s['width'])} px, "
        f"batch {s['batch']}, {s['steps']} steps, {guidance}",
        "",
        "Parameters",
        *(f"  {name:<14}{count:>15,}" for name, count in s["params"].items()),
        "",
        "Tokens",
        f"  image           {s['image_tokens']:>6}  (H/16 x W/16)",
        f"  caption         {s['caption_tokens']:>6}  (padded to a multiple of 32)",
        f"  main sequence   {s['sequence_length']:>6}  (image + caption, each padded)",
        f"  text encoder    {s['text_encoder_seq_len']:>6}  (prompt padded to max length)",
        "",
        f"{'TFLOP':<40}{'per image':>11}{'per batch':>11}",
        _row(f"text encode ({s['text_encoder_passes']} x {s['text_encoder_tflops']:.3f})",
             per_image["text_encode"], per_batch["text_encode"]),
        _row(f"denoise ({s['transformer_forwards']} forwards x {per_forward:.3f})",
             per_image["denoise"], per_batch["denoise"]),
        _row("vae decode", per_image["vae_decode"], per_batch["vae_decode"]),
        _row("total", per_image["total"], per_batch["total"]),
        "",
        f"{'Weights (GB = 1e9 bytes)':<26}{'transformer':>12}{'text_encoder':>13}{'vae':>7}"
        f"{'total':>8}",
        *(
            f"  {p:<24}{w['transformer']:>12.2f}{w['text_encoder']:>13.2f}{w['vae']:>7.2f}"
            f"{w['total']:>8.2f}"
            for p, w in s["weight_gb"].items()
        ),
        "  (fp8/int8/int4: Linear weights of transformer blocks and text-encoder layers;",
        "   the rest, VAE included, stays bf16)",
        "",
        f"Source: {s['source']}",
    ]
    return "\n".join(lines)


def _row(label: str, image: float, batch: float) -> str:
    return f"  {label:<38}{image:>11.2f}{batch:>11.2f}"
