"""`advisor probe`: measure real Z-Image-Turbo pipeline runs on this machine, append records.

torch, diffusers and transformers are imported inside the handler only (the `probe` extra), so
`advisor --help` and every planning command work without them.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from advisor import MEASUREMENTS_DIR
from advisor.errors import AdvisorError

PROBE_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "psutil")


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [name for name in PROBE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise AdvisorError(f"the probe needs {', '.join(missing)}: pip install -e '.[probe]'")
    if args.tiny and args.weights not in ("auto", "synthetic"):
        raise AdvisorError(f"--tiny builds synthetic weights; it cannot load --weights {args.weights}")
    if args.limit_s is not None and args.limit_s <= 0:
        raise AdvisorError(f"--limit-s: expected a positive number of seconds, got {args.limit_s}")

    import torch

    from probes import grids, sweep

    if args.device == "cuda" and not torch.cuda.is_available():
        raise AdvisorError(f"--device cuda: no CUDA device visible to torch {torch.__version__}; "
                           "use --device cpu --tiny for a CPU run")
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" \
        else torch.device("cpu")
    grid_name, configs = grids.load_grid(args.grid)
    if device.type == "cpu":
        configs = cpu_runnable(configs)
    out = args.out or default_out(device, args.tiny)
    options = sweep.Options(configs=configs, out=out, device=device, grid=grid_name,
                            weights="synthetic" if args.tiny else args.weights,
                            allow_download=args.allow_download, tiny=args.tiny,
                            limit_s=args.limit_s)
    print(f"grid {grid_name}: {len(configs)} configs -> {out}")
    summary = sweep.run(options)
    sweep.print_summary(summary, out)
    return 0


def cpu_runnable(configs):
    """Drop the configs that need CUDA (compile, offload, cuDNN/flash attention, TF32, and fp16,
    which diffusers refuses to run on CPU)."""
    keep = [c for c in configs if not c.compile and c.offload == "none"
            and c.attention == "native" and c.precision in ("bf16", "fp32")]
    if len(keep) < len(configs):
        print(f"cpu: leaving out {len(configs) - len(keep)} configs that need CUDA "
              "(compile, offload, cudnn/flash attention, TF32, fp16)")
    return keep


def default_out(device, tiny: bool) -> Path:
    if tiny or device.type != "cuda":
        raise AdvisorError("--out is required with --tiny or --device cpu (the shipped files in "
                           "data/measurements/ hold full-size GPU runs only)")
    import torch

    from probes.sweep import catalog_entry

    name = torch.cuda.get_device_name(device)  # the same name NVML reports
    entry = catalog_entry(name, torch.cuda.get_device_properties(device).total_memory / 2**20)
    if entry is None:
        raise AdvisorError(f"no gpu_catalog.yaml entry matches this GPU ({name!r}); "
                           "pass --out FILE.jsonl (and consider adding the GPU to the catalog)")
    return MEASUREMENTS_DIR / f"{entry.id}.jsonl"
