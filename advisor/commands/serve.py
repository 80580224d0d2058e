"""`advisor serve`: a saved plan served over HTTP on Ray Serve (advisor/serve/; the `serve`
extra), one replica per GPU, batching as the plan assumes."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.serve.spec import DEFAULT_REQUEST_TIMEOUT_S

NEEDS = {"ray": ("ray", "starlette"), "local": ("aiohttp",)}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve a saved plan over HTTP on Ray Serve",
        description="Serve the pipeline the way a saved plan runs it: one Ray Serve replica per "
        "GPU (the plan's serving GPUs, as many as the Ray cluster has), the option's setting, "
        "batches of one resolution up to the plan's max batch within its window. JSON API: "
        "POST /generate, GET /healthz, GET /plan (docs/serving.md). Needs the serve extra: "
        "pip install -e '.[serve]' (and the probe extra for the pipeline).")
    p.add_argument("--plan", type=Path, required=True, metavar="PLAN.yaml",
                   help="a plan saved with `advisor recommend --out`")
    p.add_argument("--option", type=int, default=0, metavar="I",
                   help="which option of the plan (default 0, the best)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--engine", choices=list(NEEDS), default="ray",
                   help="ray: Ray Serve (default); local: one replica in this process behind the "
                   "same HTTP front, without Ray (where Ray cannot run)")
    p.add_argument("--address", metavar="ADDRESS",
                   help="an existing Ray cluster (auto, ray://HOST:PORT); default: start one here")
    p.add_argument("--replicas", type=int,
                   help="replicas (default the plan's serving GPUs, at most the GPUs Ray has)")
    p.add_argument("--max-queued", type=int, default=0, metavar="N",
                   help="requests a replica holds, its running batch included (default 9 max "
                   "batches); beyond that and as many again at the front: 503")
    p.add_argument("--request-timeout-s", type=float, default=DEFAULT_REQUEST_TIMEOUT_S,
                   help=f"answer 504 past this (default {DEFAULT_REQUEST_TIMEOUT_S:g})")
    p.add_argument("--weights", default="auto", metavar="auto|synthetic|PATH",
                   help="as `advisor probe --weights`")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="the tiny pipeline (tests; with --device "
                   "cpu)")
    p.set_defaults(func=run)


def build_spec(args: argparse.Namespace):
    from advisor.serve.spec import from_plan

    if not 1 <= args.port <= 65535:
        raise AdvisorError(f"--port: expected 1..65535, got {args.port}")
    if args.replicas is not None and args.replicas < 1:
        raise AdvisorError(f"--replicas: expected an integer >= 1, got {args.replicas}")
    if args.max_queued < 0:
        raise AdvisorError(f"--max-queued: expected an integer >= 0, got {args.max_queued}")
    if not args.request_timeout_s > 0:
        raise AdvisorError(f"--request-timeout-s: expected > 0, got {args.request_timeout_s}")
    if not args.plan.is_file():
        raise AdvisorError(f"--plan {args.plan}: no such file")
    spec = from_plan(args.plan, args.option)
    planned = spec.replicas
    spec = spec.with_changes(
        replicas=args.replicas, max_queued=args.max_queued,
        request_timeout_s=args.request_timeout_s, weights=args.weights, device=args.device,
        tiny=args.tiny, gpus_per_replica=0.0 if args.device == "cpu" else None)
    return spec, planned


def run(args: argparse.Namespace) -> int:
    spec, planned = build_spec(args)
    missing = [n for n in NEEDS[args.engine] if importlib.util.find_spec(n) is None]
    if missing:
        raise AdvisorError(f"advisor serve --engine {args.engine} needs {', '.join(missing)}: "
                           "pip install -e '.[serve]'")
    if args.engine == "local":
        from advisor.serve.local import serve_forever

        print(f"serving {', '.join(spec.sizes)} on one replica in this process (no Ray), "
              f"batches up to {spec.max_batch}, window {spec.window_s:g} s")
        serve_forever(spec, args.host, args.port)
    else:
        from advisor.serve.app import serve_forever

        serve_forever(spec, args.host, args.port, args.address, planned)
    return 0
