"""`advisor probe`: measure real Z-Image-Turbo pipeline runs on this machine, append records.

torch, diffusers and transformers are imported inside the handler only (the `probe` extra), so
`advisor --help` and every planning command work without them.
"""
from __future__ import annotations

import argparse
import importlib.util
from dataclasses import replace
from pathlib import Path

from advisor import MEASUREMENTS_DIR
from advisor.catalog import load_catalog
from advisor.contract import SPLIT_MODES, Parallel
from advisor.errors import AdvisorError, shown
from advisor.fileio import check_writable

PROBE_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "psutil")
# Device memory a pipeline run holds outside torch's allocator (CUDA context, loaded kernel
# modules, library handles), which a card must hold besides what torch reserves. Source: the
# shipped H200 records (torch 2.11, CUDA 13.0, driver 580), nvml_peak_used_mb - peak_reserved_mb:
# median 698.8 MiB over the 51 bf16 native records (695-705; fp32 up to 715). --emulate leaves a
# card's capacity less this to torch; the emulated card's own context may differ by tens of MiB.
CUDA_CONTEXT_MIB = 700
MAX_LIMIT_S = 30 * 24 * 3600.0  # a month: the longest time budget taken
MAX_CAP_GIB = 4096.0  # no GPU holds more
# Records under a memory cap: the fit reads them for its minimum-cap model, apart from the others
CAPPED_DIR = MEASUREMENTS_DIR / "capped"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "probe",
        help="measure real pipeline runs on this machine's GPU (needs the probe extra)",
        description=(
            "Run the Z-Image-Turbo pipeline over a grid of configs and append one JSON record "
            "per config to --out (stage times, memory, NVML power and utilization). Re-running "
            "the same command resumes: configs already in the file are skipped."
        ),
    )
    p.add_argument("--grid", default="standard", metavar="quick|standard|full|FILE",
                   help="built-in grid or a YAML grid file (default standard; see probes/grids.py)")
    p.add_argument("--weights", default="auto", metavar="auto|synthetic|PATH",
                   help="auto: a local Hugging Face snapshot of Tongyi-MAI/Z-Image-Turbo if cached, "
                        "else synthetic weights of the exact architecture; PATH: a saved pipeline")
    p.add_argument("--allow-download", action="store_true",
                   help="with --weights auto, download the snapshot if it is not cached")
    p.add_argument("--tiny", action="store_true",
                   help="tiny dimensions of the same architecture (tests; needs --out)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="where to run (default cuda)")
    p.add_argument("--out", type=Path, metavar="FILE.jsonl",
                   help="results file (default data/measurements/<catalog-id>.jsonl)")
    p.add_argument("--limit-s", type=float, metavar="SECONDS",
                   help="soft time budget: no config starts that would end past it")
    p.add_argument("--profile", action="store_true",
                   help="also profile one call per config with torch.profiler: kernel seconds "
                        "by op class per stage, GPU-busy vs wall, kernels launched "
                        "(results.profile; CUDA only)")
    p.add_argument("--gpus", type=int, metavar="N",
                   help="run every config on N GPUs of this host at once: a pipeline per GPU, "
                        "each in its own process (data parallel: a full box's throughput, host "
                        "CPU and RAM), or one image across them with --split; records carry "
                        "config.parallel (with --device cpu: N CPU processes)")
    p.add_argument("--split", choices=SPLIT_MODES,
                   help="with --gpus N: split one image across the N GPUs (sequence parallelism "
                        "of the transformer with cache-dit: pip install cache-dit einops)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="probe every GPU node of a Ray cluster at once, one task per GPU model "
                        "(ADDRESS: auto, ray://HOST:PORT, or local to start one here); --out "
                        "is then a folder (default data/measurements/), one file per GPU model "
                        "(needs the ray extra)")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--memory-cap-gib", type=float, metavar="GIB",
                     help="cap what torch may take on the GPU at GIB GiB, as on a smaller card "
                          "(set before the pipeline loads; records carry config.memory_cap_gib)")
    cap.add_argument("--emulate", metavar="GPU-ID",
                     help="cap at a catalog GPU's memory less the CUDA context "
                          f"({CUDA_CONTEXT_MIB} MiB), e.g. rtx-4090")
    cap.add_argument("--min-cap", action="store_true",
                     help="per config, search the smallest cap (within 0.25 GiB) under which a "
                          "pipeline call runs, then measure under it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [name for name in PROBE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise AdvisorError(f"the probe needs {', '.join(missing)}: pip install -e '.[probe]'")
    check_before_torch(args)
    cap_gib = memory_cap_gib(args)
    capped = cap_gib is not None or args.min_cap
    check_gpus(args, capped)
    if args.ray and capped:
        raise AdvisorError("--ray with a memory cap (--memory-cap-gib, --emulate, --min-cap): "
                           "not supported; cap one machine at a time")
    if capped and args.device != "cuda":
        flag = "--min-cap" if args.min_cap else "a memory cap"
        raise AdvisorError(f"{flag} needs --device cuda (it caps torch's CUDA allocator); "
                           f"got --device {args.device}")
    check_out(args)
    if args.ray:
        from probes import fleet

        if importlib.util.find_spec("ray") is None:
            raise AdvisorError("--ray needs Ray: pip install -e '.[ray]'")
        fleet.check_address(args.ray)

    import torch

    from probes import caps, quantize, sweep

    if args.ray:
        return run_on_ray(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise AdvisorError(f"--device cuda: no CUDA device visible to torch {torch.__version__}; "
                           "use --device cpu --tiny for a CPU run")
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" \
        else torch.device("cpu")
    if cap_gib is not None and cap_gib > caps.device_gib(device):
        raise AdvisorError(f"memory cap {cap_gib:g} GiB: more than this GPU's "
                           f"{caps.device_gib(device):.1f} GiB")
    options = sweep_options(args, device)
    quantize.check_configs(options.configs, device)
    check_memory(options.configs, caps.device_gib(device) if device.type == "cuda" else None)
    if device.type == "cuda":
        options.configs = within_gpus(options.configs, torch.cuda.device_count())
    options.configs = [replace(c, memory_cap_gib=cap_gib) for c in options.configs]
    out = options.out = args.out or default_out(device, capped)
    print(f"grid {options.grid}: {len(options.configs)} configs -> {out}")
    if cap_gib is not None:
        print(f"memory cap: {cap_gib:g} GiB" + (f" (--emulate {args.emulate})" if args.emulate else ""))
    summary = sweep.run(options)
    sweep.print_summary(summary, out)
    return 0


def run_on_ray(args: argparse.Namespace) -> int:
    """`--ray ADDRESS`: the grid on every GPU model of the cluster (probes.fleet)."""
    import torch

    from probes import fleet

    out = args.out or MEASUREMENTS_DIR  # checked in check_out
    options = sweep_options(args, torch.device(args.device))
    out.mkdir(parents=True, exist_ok=True)
    print(f"grid {options.grid}: {len(options.configs)} configs on Ray ({args.ray}) -> {out}/")
    gpus = max((c.parallel.gpus for c in options.configs), default=1)
    fleet.report(fleet.run(args.ray, options, out, gpus))
    return 0


def sweep_options(args: argparse.Namespace, device):
    """The sweep's options from the arguments: the grid's configs on the layout asked, those
    this device kind can run, checked; `out` is the caller's to set."""
    from probes import grids, runs, split

    grid_name, configs = grids.load_grid(args.grid)
    configs = with_layout(configs, args)
    if device.type == "cpu":
        configs = cpu_runnable(configs)
    split.check_configs(configs)  # under Ray before any task: the nodes need the same packages
    return runs.Options(configs=configs, out=args.out, device=device, grid=grid_name,
                         weights="synthetic" if args.tiny else args.weights,
                         allow_download=args.allow_download, tiny=args.tiny,
                         limit_s=args.limit_s, min_cap=args.min_cap, profile=args.profile)


def check_before_torch(args: argparse.Namespace) -> None:
    """The flags whose check needs no torch, checked before torch is imported (seconds and
    hundreds of MB): weights, time budget, memory cap, grid (then `check_out`)."""
    from probes import grids

    if args.tiny and args.weights not in ("auto", "synthetic"):
        raise AdvisorError(f"--tiny builds synthetic weights; it cannot load --weights "
                           f"{shown(args.weights)}")
    if args.weights not in ("auto", "synthetic") \
            and not (Path(args.weights) / "model_index.json").is_file():
        raise AdvisorError(f"--weights {shown(args.weights)}: expected a folder with "
                           "model_index.json (a saved ZImagePipeline), or auto, or synthetic")
    if args.limit_s is not None and not 0 < args.limit_s <= MAX_LIMIT_S:
        raise AdvisorError(f"--limit-s: expected a positive number of seconds, got "
                           f"{args.limit_s} (at most {MAX_LIMIT_S:g})")
    if args.memory_cap_gib is not None and not 0 < args.memory_cap_gib <= MAX_CAP_GIB:
        raise AdvisorError(f"--memory-cap-gib: expected a positive number of GiB, got "
                           f"{args.memory_cap_gib:g} (at most {MAX_CAP_GIB:g})")
    grids.load_grid(args.grid)


def check_out(args: argparse.Namespace) -> None:
    """--out, before torch and before any run: a file that can be written (--ray: a folder)."""
    if (args.tiny or args.device != "cuda") and args.out is None:
        raise AdvisorError("--out is required with --tiny or --device cpu (the shipped files in "
                           "data/measurements/ hold full-size GPU runs only)")
    if args.out is not None and not args.ray:
        check_writable(args.out, "--out")
    if args.ray and args.out is not None and args.out.exists() and not args.out.is_dir():
        raise AdvisorError(f"--out {args.out}: with --ray, a folder (one file per GPU model)")


def check_gpus(args: argparse.Namespace, capped: bool) -> None:
    """--gpus and --split, before any work."""
    if args.split and args.gpus is None:
        raise AdvisorError(f"--split {args.split} needs --gpus N (the GPUs to split an image over)")
    if args.gpus is None:
        return
    if args.gpus < 1 or (args.split and args.gpus < 2):
        need = "2 or more, to split an image across" if args.split else "a positive number"
        raise AdvisorError(f"--gpus: expected {need}, got {args.gpus}")
    if capped and args.gpus > 1:
        raise AdvisorError("--gpus N with a memory cap (--memory-cap-gib, --emulate, --min-cap): "
                           "not supported; cap one GPU at a time")


def with_layout(configs, args: argparse.Namespace):
    """The grid's configs on the layout --gpus/--split ask for (unchanged without --gpus)."""
    if args.gpus is None:
        return configs
    if any(not c.parallel.single for c in configs):
        raise AdvisorError(f"--gpus {args.gpus}: the grid sets its own GPU layouts (`parallel`); "
                           "run it without --gpus")
    layout = Parallel(args.split or ("data" if args.gpus > 1 else "none"), args.gpus)
    return [replace(c, parallel=layout) for c in configs]


def within_gpus(configs, visible: int):
    """Leave out the configs that need more GPUs than this machine shows (one grid serves hosts
    of 2 and 4 GPUs); AdvisorError when none is left."""
    keep = [c for c in configs if c.parallel.gpus <= visible]
    if configs and not keep:
        raise AdvisorError(f"every config of the grid needs more GPUs than the {visible} this "
                           "machine shows to torch")
    if len(keep) < len(configs):
        print(f"leaving out {len(configs) - len(keep)} configs that need more than {visible} "
              "GPUs")
    return keep


def cpu_runnable(configs):
    """Drop the configs that need CUDA (compile, of the transformer or the VAE, and its modes,
    offload, cuDNN/flash attention, TF32, fp16, which diffusers refuses to run on CPU, and
    fp8)."""
    keep = [c for c in configs if not (c.compile or c.vae_compile) and c.offload == "none"
            and c.attention == "native" and c.precision in ("bf16", "fp32", "int8-wo")]
    if len(keep) < len(configs):
        print(f"cpu: leaving out {len(configs) - len(keep)} configs that need CUDA "
              "(compile, offload, cudnn/flash attention, TF32, fp16, fp8)")
    return keep


def check_memory(configs, device_gib: float | None) -> None:
    """Refuse, before any work, a config whose weights cannot be on this GPU at once: without
    offload the pipeline is built in its dtype on the GPU (a quantized one in bf16, quantized
    there), then holds the weights its precision and quantization scope leave (a scope of the
    transformer alone keeps the text encoder in bf16). Under a memory cap an overflow is a
    measurement (an `oom` record), not a refusal. `device_gib`: the GPU's memory; None (CPU)
    checks nothing."""
    if device_gib is None:
        return
    from advisor import workload
    from advisor.contract import dtype_of

    for c in configs:
        held = workload.weight_bytes(c.precision, quant_scope=c.quant_scope)["total"]
        built = workload.weight_bytes(dtype_of(c.precision))["total"]
        if c.offload == "none" and max(held, built) / 2**30 > device_gib:
            raise AdvisorError(
                f"cannot probe {c.label()}: its weights take {max(held, built) / 2**30:.1f} GiB "
                f"on the GPU (built in {dtype_of(c.precision)}, then {held / 2**30:.1f} GiB "
                f"held), more than its {device_gib:.1f} GiB; leave it out of the grid or probe "
                "it with offload")


def memory_cap_gib(args: argparse.Namespace) -> float | None:
    """The cap --memory-cap-gib or --emulate asks for, in GiB, or None."""
    if args.memory_cap_gib is not None:  # checked in check_before_torch
        return args.memory_cap_gib
    if args.emulate is None:
        return None
    try:
        gpu = load_catalog().get(args.emulate)
    except AdvisorError as exc:
        raise AdvisorError(f"--emulate: {exc}") from None
    return emulated_cap_gib(gpu.memory_gb)


def emulated_cap_gib(memory_gb: float) -> float:
    """What torch can take on a card sold as `memory_gb` GB: that many GiB (an RTX 4090's "24 GB"
    is 24,564 MiB in nvidia-smi), less the CUDA context."""
    return round(memory_gb - CUDA_CONTEXT_MIB / 1024, 2)


def default_out(device, capped: bool = False) -> Path:
    """data/measurements/<catalog-id>.jsonl, or for capped runs data/measurements/capped/
    (a CUDA device: `check_out` asks for --out otherwise)."""
    import torch

    from probes.runs import catalog_entry

    name = torch.cuda.get_device_name(device)  # the same name NVML reports
    entry = catalog_entry(name, torch.cuda.get_device_properties(device).total_memory / 2**20)
    if entry is None:
        raise AdvisorError(f"no gpu_catalog.yaml entry matches this GPU ({name!r}); "
                           "pass --out FILE.jsonl (and consider adding the GPU to the catalog)")
    return (CAPPED_DIR if capped else MEASUREMENTS_DIR) / f"{entry.id}.jsonl"
