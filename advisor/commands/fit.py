"""`advisor fit`, `advisor validate`, `advisor predict`: the fitted latency and memory models."""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

from advisor.commands.common import add_config_args, add_data_args, add_format_arg, models_from_args
from advisor.contract import (
    ATTENTIONS, CFG_GUIDANCE_SCALE, COMPILE_MODES, OFFLOADS, PRECISIONS, QUALITY_CAVEAT,
    QUANT_SCOPES, QUANTIZATIONS, Config,
)

WIDTH = 100
INDENT = 13  # the labels' column


def add_parser(subparsers) -> None:
    fit = subparsers.add_parser(
        "fit", help="fit the latency and memory models on the measurements",
        description="Fit the latency and memory models on the measurement records, calibrate "
        "their prediction intervals and cache the result (refits even when a cache exists).")
    add_data_args(fit)
    add_format_arg(fit)
    fit.set_defaults(func=run_fit)

    validate = subparsers.add_parser(
        "validate", help="accuracy of the fitted models on held-out measurements",
        description="Held-out accuracy of the models: MAPE, median and max absolute % error "
        "and 90% interval coverage for total latency, the denoise step and peak memory, "
        "under K-fold, leave-one-shape-out and leave-one-GPU-out, for the compute precisions "
        "and, apart, per quantized precision. JSON keys latency_mape, "
        "memory_mape (torch peak allocated), nvml_memory_mape (NVML used) and coverage "
        "(total-latency coverage) hold one figure per split; metrics has the rest, quantized "
        "the quantized precisions' metrics, residuals a row per held-out point.")
    add_data_args(validate)
    add_format_arg(validate)
    validate.add_argument("--recompute", action="store_true",
                          help="compute the report here even where one is cached, or shipped "
                          "for these exact data and model code")
    validate.add_argument("--ship", action="store_true",
                          help="compute the report and write it as the shipped one "
                          "(data/validation/report.json.gz), read for these data and model "
                          "code by a first validate and the dashboard; after a change to the "
                          "shipped data or the model code")
    validate.set_defaults(func=run_validate)

    predict = subparsers.add_parser(
        "predict", help="latency, throughput and memory of one config on one GPU",
        description="Predict one config: stage latencies with a 90% interval, images per "
        "second, peak memory as nvidia-smi shows it, whether it fits (torch peak allocated plus "
        "a stated margin, against the catalog memory), MFU, and the source (measured, fitted on "
        "a probed GPU, or transferred to an unprobed one via its specs).")
    predict.add_argument("--gpu", required=True, help="catalog id, e.g. h100-sxm-80gb")
    add_config_args(predict)
    predict.add_argument("--precision", choices=PRECISIONS, default="bf16",
                         help=f"default bf16; {', '.join(QUANTIZATIONS)} quantize the Linear "
                         "layers of the transformer blocks and the text encoder (torchao; lossy, "
                         "fp8 ones need compute capability 8.9 or newer)")
    predict.add_argument("--compile", action="store_true",
                         help="regional torch.compile of the transformer blocks")
    predict.add_argument("--attention", choices=ATTENTIONS, default="native",
                         help="attention backend (default native)")
    predict.add_argument("--offload", choices=OFFLOADS, default="none",
                         help="CPU offload mode (default none)")
    predict.add_argument("--quant-scope", choices=QUANT_SCOPES, default=QUANT_SCOPES[0],
                         help="with a quantized precision: what it quantizes (default "
                         f"{QUANT_SCOPES[0]}; transformer: the text encoder stays bf16)")
    predict.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                         help="torch.compile mode of what is compiled (--compile, "
                         "--vae-compile; default: inductor's default)")
    predict.add_argument("--vae-compile", action="store_true",
                         help="torch.compile the VAE decoder")
    predict.add_argument("--vae-channels-last", action="store_true",
                         help="the VAE in channels-last memory format")
    add_data_args(predict)
    add_format_arg(predict)
    predict.set_defaults(func=run_predict)


def run_fit(args: argparse.Namespace) -> int:
    summary = models_from_args(args, refit=True).summary()
    print(json.dumps(summary, indent=2) if args.format == "json" else _summary_table(summary))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from advisor.cache import validation_of
    from advisor.validation import format_table

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from advisor.published import load_published
    from advisor.shipped import report_key, write_shipped

    models = models_from_args(args)
    # keyed before the validation, whose cache write may add a problem to the models
    key = report_key(models, load_published()) if args.ship else None
    report = validation_of(models, progress=_progress, workers=cpus or 1,
                           recompute=args.recompute or args.ship)
    if args.ship:
        path = write_shipped(report, key)
        print(f"validation report shipped: {path}", file=sys.stderr)
    print(json.dumps(report, indent=2) if args.format == "json" else format_table(report))
    return 0


def _progress(step: int, of: int, what: str) -> None:
    """A first validation refits the models once per fold (about 20 s on 2 cores)."""
    print(f"validating ({step}/{of}): {what.replace('_', '-')}...", file=sys.stderr, flush=True)


def run_predict(args: argparse.Namespace) -> int:
    from advisor.catalog import load_catalog
    from advisor.coverage import Probed, caveats
    from advisor.errors import AdvisorError
    from advisor.features import GpuSpec, check_config, refusal

    config = Config(height=args.height, width=args.width, batch=args.batch, steps=args.steps,
                    guidance_scale=CFG_GUIDANCE_SCALE if args.cfg else 0.0,
                    precision=args.precision, attention=args.attention, compile=args.compile,
                    offload=args.offload, caption_tokens=args.caption_tokens,
                    quant_scope=args.quant_scope, compile_mode=args.compile_mode,
                    vae_compile=args.vae_compile, vae_channels_last=args.vae_channels_last)
    check_config(config)  # bad input, or a GPU that cannot run it, fails before any fitting
    gpu = load_catalog(args.catalog).get(args.gpu)
    reason = refusal(GpuSpec.from_catalog(gpu), config)
    if reason:
        raise AdvisorError(reason)
    models = models_from_args(args)
    result = models.predict(gpu.id, config)
    notes = caveats(result, gpu, Probed.of(models.records)) + (
        [f"{config.precision} is {QUALITY_CAVEAT}"] if config.precision in QUANTIZATIONS else [])
    print(json.dumps({**result.as_dict(), "caveats": notes}, indent=2) if args.format == "json"
          else _prediction_table(result, notes))
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
        host = iv["host_bound"]
        lines.append(f"90% {kind} interval: fitted {_pct(iv['fitted'])}, transferred "
                     + (_pct(iv["transferred"]) if iv["transferred"] else
                        "assumed (one GPU probed)")
                     + (f", quantized {_pct(iv['quantized'])}" if iv["quantized"] else "")
                     + (f"; host-bound configs: fitted {_pct(host['fitted'])}"
                        + (f", transferred {_pct(host['transferred'])}"
                           if host["transferred"] else "") if host else ""))
        if kind == "latency":
            lines += [f"  with the machine spread of {regime.replace('_', '-')} configs: "
                      f"{_pct(band['bounds'])} ({band['n']} machine medians), in quadrature"
                      for regime, band in s["machine_bands"].items()]
    lines.append("architecture never probed, latency term by family (compute capability): "
                 + "; ".join(f"{family} +/-{w['half_width']:.0%} ({len(w['points'])} published "
                             f"point(s))" for family, w in s["architecture_widths"].items()))
    lines.append("default setting (bf16, native attention, no compile, no offload), 1024x1024:")
    for gpu, e in s["efficiency_1024"].items():
        lines.append(f"  {gpu}: step {e['denoise_step_s']:.3f} s, MFU {e['mfu']:.1%}, "
                     f"matmul efficiency {e['matmul_efficiency']:.1%}")
    if s["problems"]:
        lines.append(f"{len(s['problems'])} record problem(s), first: {s['problems'][0]}")
    lines += [f"kept: {kept}" for kept in s["kept"]]
    lines.append(f"cache: {s['cache_path'] or 'not written'}")
    return "\n".join(lines)


def _pct(bounds) -> str:
    import math

    lo, hi = bounds
    return f"{100 * (math.exp(lo) - 1):+.1f}% / {100 * (math.exp(hi) - 1):+.1f}%"


def _prediction_table(p, notes: list[str]) -> str:
    """The prediction in labelled lines, wrapped to WIDTH columns; its caveats first."""
    from advisor.coverage import accuracy

    c, lat, mem = p.config, p.latency, p.memory
    lo, hi = lat.interval_s
    extras = [f"{c.steps} steps", f"{c.caption_tokens} caption tokens"] + (
        ["CFG"] if c.cfg else [])
    rows = [
        ("source", f"{p.source}: {p.source_detail}"),
        ("latency", f"{lat.total_s:.3f} s per batch (90% interval {lo:.3f}-{hi:.3f} s)"),
        ("  stages", f"text encode {lat.text_encode_s:.3f} s, denoise {lat.denoise_s:.3f} s "
                     f"({lat.denoise_step_s:.4f} s/step), VAE decode {lat.vae_decode_s:.3f} s"),
        ("throughput", f"{p.images_per_s:.3f} images/s; transformer {p.achieved_tflops:.0f} "
                       f"TFLOP/s = MFU {p.mfu:.1%}"),
        ("memory", _memory_text(mem)),
        ("fits", f"{'yes' if p.fits else 'NO'}: {p.fits_reason} ({mem.capacity_source})"),
        ("  rule", mem.rule),
        ("intervals", f"latency: {accuracy(p)}"),
        ("", f"memory: {mem.basis}"),
        ("model", p.model_version),
    ]
    lines = [f"{p.gpu}: {c.shape_label()}, batch {c.batch}, {c.setting.label}, "
             f"{', '.join(extras)}"]
    rows = [("caveat", note) for note in notes] + rows
    for label, text in rows:
        lines += textwrap.wrap(text, WIDTH, initial_indent=f"{label:<{INDENT}}",
                               subsequent_indent=" " * INDENT)
    return "\n".join(lines)


def _memory_text(mem) -> str:
    """Torch's peak and what the run needs; the nvidia-smi figure only when the run fits on the
    card (past its size the allocator's figure is capped, not measured)."""
    alo, ahi = mem.allocated_interval_gb
    text = (f"torch peak allocated {mem.allocated_gb:.1f} GB (90% interval {alo:.1f}-{ahi:.1f} "
            f"GB); needs {mem.needed_gb:.1f} GB on the card")
    if mem.needed_gb > mem.capacity_gb:
        return text + (f", OVER its {mem.capacity_gb:.1f} GB: no nvidia-smi figure (the run "
                       "would not fit)")
    nlo, nhi = mem.nvml_interval_gb
    return text + (f"; {mem.nvml_gb:.1f} GB as nvidia-smi shows it ({nlo:.1f}-{nhi:.1f} GB)"
                   + (", capped by the card's size" if mem.nvml_capped else ""))
