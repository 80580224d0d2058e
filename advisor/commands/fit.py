"""`advisor fit`, `advisor validate`, `advisor predict`: the fitted latency and memory models."""
from __future__ import annotations

import argparse
import json

from advisor import CATALOG_PATH, MEASUREMENTS_DIR
from advisor.contract import ATTENTIONS, OFFLOADS, PRECISIONS


def add_parser(subparsers) -> None:
    fit = subparsers.add_parser(
        "fit", help="fit the latency and memory models on the measurements",
        description="Fit the latency and memory models on the measurement records, calibrate "
        "their prediction intervals and cache the result (refits even when a cache exists).")
    _data_args(fit)
    fit.add_argument("--format", choices=["table", "json"], default="table",
                     help="output format (default table)")
    fit.set_defaults(func=run_fit)

    validate = subparsers.add_parser(
        "validate", help="accuracy of the fitted models on held-out measurements",
        description="Held-out accuracy of the models: MAPE, median and max absolute % error "
        "and 90% interval coverage for total latency, the denoise step and peak memory, "
        "under K-fold, leave-one-shape-out and leave-one-GPU-out. JSON keys latency_mape, "
        "memory_mape (torch peak allocated), nvml_memory_mape (NVML used) and coverage "
        "(total-latency coverage) hold one figure per split; metrics has the rest, residuals "
        "a row per held-out point.")
    _data_args(validate)
    validate.add_argument("--format", choices=["table", "json"], default="table",
                          help="output format (default table)")
    validate.set_defaults(func=run_validate)

    predict = subparsers.add_parser(
        "predict", help="latency, throughput and memory of one config on one GPU",
        description="Predict one config: stage latencies with a 90% interval, images per "
        "second, peak memory as nvidia-smi shows it, whether it fits (torch peak allocated plus "
        "a stated margin, against the catalog memory), MFU, and the source (measured, fitted on "
        "a probed GPU, or transferred to an unprobed one via its specs).")
    predict.add_argument("--gpu", required=True, help="catalog id, e.g. h100-sxm-80gb")
    predict.add_argument("--height", type=int, required=True, help="px, a multiple of 16")
    predict.add_argument("--width", type=int, required=True, help="px, a multiple of 16")
    predict.add_argument("--batch", type=int, default=1, help="images per batch (default 1)")
    predict.add_argument("--steps", type=int, default=9, help="denoising steps (default 9)")
    predict.add_argument("--precision", choices=PRECISIONS, default="bf16",
                         help="default bf16")
    predict.add_argument("--compile", action="store_true",
                         help="regional torch.compile of the transformer blocks")
    predict.add_argument("--attention", choices=ATTENTIONS, default="native",
                         help="attention backend (default native)")
    predict.add_argument("--offload", choices=OFFLOADS, default="none",
                         help="CPU offload mode (default none)")
    predict.add_argument("--cfg", action="store_true",
                         help="classifier-free guidance (two transformer passes a step)")
    predict.add_argument("--caption-tokens", type=int, default=64,
                         help="prompt tokens reaching the transformer, 1..512 (default 64)")
    _data_args(predict)
    predict.add_argument("--format", choices=["table", "json"], default="table",
                         help="output format (default table)")
    predict.set_defaults(func=run_predict)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=str(MEASUREMENTS_DIR),
                   help="folder of measurement *.jsonl files (default: the shipped data)")
    p.add_argument("--catalog", default=str(CATALOG_PATH),
                   help="GPU catalog YAML (default: the shipped gpu_catalog.yaml)")
    p.add_argument("--cache-dir", default=None,
                   help="model cache folder (default $ZIMAGE_ADVISOR_CACHE or "
                   "~/.cache/zimage-advisor)")


def _models(args, refit: bool = False):
    from advisor.fit import load_models

    return load_models(args.data, args.catalog, args.cache_dir, refit=refit)


def run_fit(args: argparse.Namespace) -> int:
    from advisor.fit import fit_summary

    summary = fit_summary(_models(args, refit=True))
    print(json.dumps(summary, indent=2) if args.format == "json" else _summary_table(summary))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from advisor.validation import format_table

    report = _models(args).validation
    print(json.dumps(report, indent=2) if args.format == "json" else format_table(report))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from advisor.features import check_config

    config = dict(height=args.height, width=args.width, batch=args.batch, steps=args.steps,
                  precision=args.precision, attention=args.attention, offload=args.offload,
                  caption_tokens=args.caption_tokens)
    check_config(**config)  # bad input fails before any fitting
    result = _models(args).predict(args.gpu, compile=args.compile, cfg=args.cfg, **config)
    print(json.dumps(result, indent=2) if args.format == "json" else _prediction_table(result))
    return 0


def _summary_table(s: dict) -> str:
    lines = [f"fitted {s['model_version']} on {s['records_used']} ok records "
             f"(+{s['oom_records']} OOM)"]
    lines += [f"  {gpu}: {n} records" for gpu, n in s["gpus"].items()]
    cal = s["calibration"]
    if cal:
        lines.append(f"K-fold: latency MAPE {cal['latency_mape']:.1f}%, "
                     f"memory MAPE {cal['memory_mape']:.1f}% torch allocated, "
                     f"{cal['nvml_memory_mape']:.1f}% NVML used")
    for kind, iv in s["intervals"].items():
        lines.append(f"90% {kind} interval: fitted {_pct(iv['fitted'])}, transferred "
                     + (_pct(iv["transferred"]) if iv["transferred"] else
                        "assumed (one GPU probed)"))
    lines.append("default setting (bf16, native attention, no compile, no offload), 1024x1024:")
    for gpu, e in s["efficiency_1024"].items():
        lines.append(f"  {gpu}: step {e['denoise_step_s']:.3f} s, MFU {e['mfu']:.1%}, "
                     f"matmul efficiency {e['matmul_efficiency']:.1%}")
    if s["problems"]:
        lines.append(f"{len(s['problems'])} record problem(s), first: {s['problems'][0]}")
    lines.append(f"cache: {s['cache_path'] or 'not written'}")
    return "\n".join(lines)


def _pct(bounds) -> str:
    import math

    lo, hi = bounds
    return f"{100 * (math.exp(lo) - 1):+.1f}% / {100 * (math.exp(hi) - 1):+.1f}%"


def _prediction_table(p: dict) -> str:
    c, lat = p["config"], p["latency_s"]
    flags = [c["precision"], f"{c['attention']} attention"]
    flags += ["compile"] if c["compile"] else []
    flags += [f"offload {c['offload']}"] if c["offload"] != "none" else []
    flags += ["CFG"] if c["cfg"] else []
    lo, hi = p["latency_interval_s"]
    mlo, mhi = p["memory_interval_gb"]
    return "\n".join([
        f"{p['gpu']}: {c['width']}x{c['height']}, batch {c['batch']}, {c['steps']} steps, "
        f"{', '.join(flags)}, {c['caption_tokens']} caption tokens",
        f"source       {p['source']}: {p['source_detail']}",
        f"latency      {lat['total']:.3f} s per batch (90% interval {lo:.3f}-{hi:.3f} s)",
        f"  stages     text encode {lat['text_encode']:.3f} s, denoise {lat['denoise']:.3f} s "
        f"({p['denoise_step_s']:.4f} s/step), VAE decode {lat['vae_decode']:.3f} s",
        f"throughput   {p['images_per_s']:.3f} images/s; transformer {p['achieved_tflops']:.0f} "
        f"TFLOP/s = MFU {p['mfu']:.1%}",
        f"memory       {p['peak_memory_gb']:.1f} GB peak as nvidia-smi shows it (90% interval "
        f"{mlo:.1f}-{mhi:.1f} GB; torch allocated {p['torch_peak_allocated_gb']:.1f} GB)",
        f"fits         {'yes' if p['fits'] else 'NO'}: {p['fits_reason']} "
        f"({p['memory_capacity_source']})",
        f"intervals    latency: {p['interval_basis']['latency']}",
        f"             memory: {p['interval_basis']['memory']}",
        f"model        {p['model_version']}",
    ])
