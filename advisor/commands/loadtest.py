"""`advisor loadtest`: serve Poisson (or traced, or a plan's peak) traffic the way the planner
assumes a replica serves it, measure every request, and write the measurement beside the
planner's predictions to data/loadtests/<name>.json.

Services: the real pipeline on this machine's GPU (probes/serve.py; needs the probe extra), an
HTTP endpoint (`--url`), or `--fake predicted` (sleeps the fitted service times: a CPU dry run).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from advisor.commands.common import add_data_args, models_from_args
from advisor.commands.probe import PROBE_PACKAGES
from advisor.errors import AdvisorError, escaped, shown
from advisor.fileio import check_writable
from advisor.loadtest.config import SETTING_DEFAULTS, LoadConfig, parse_resolution


MAX_INFLIGHT = 4096  # threads sending at once
NAME = r"[A-Za-z0-9._-]{1,100}"  # a results name: a file name in data/loadtests/
MAX_REQUEST_TIMEOUT_S = 3600.0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "loadtest",
        help="load-test the pipeline (or an HTTP endpoint) and compare with the planner",
        description=(
            "Serve an arrival stream through one dispatcher with dynamic batching (the plan's "
            "window and max batch, the resolution mix), measure each request's latency, and put "
            "the planner's predictions beside it: the same arrivals replayed with the fitted "
            "service times, and the long-run simulation at the same rate. Bounded in time "
            "(--limit-s) and requests (--max-requests); Ctrl-C stops and keeps what was measured."
        ),
    )
    src = p.add_argument_group("arrivals (one of --rate, --trace, --plan)")
    src.add_argument("--rate", type=float, metavar="PER_S", help="Poisson arrivals, requests/s")
    src.add_argument("--utilization", type=float, metavar="U",
                     help="Poisson arrivals at the rate the planner's simulation puts at GPU "
                          "busy fraction U (0 < U < 1), from the fitted service times of --gpu")
    src.add_argument("--trace", type=Path, metavar="FILE",
                     help="arrival trace: one 'TIME_S WIDTHxHEIGHT' a line")
    src.add_argument("--plan", type=Path, metavar="PLAN.yaml",
                     help="a saved plan (`advisor recommend --out`): its option's GPU, setting, "
                          "max batch, window and mix, at its per-GPU peak rate (--rate overrides)")
    src.add_argument("--option", type=int, default=0, metavar="I",
                     help="which option of --plan (default 0, the best)")
    cfg = p.add_argument_group("serving policy")
    cfg.add_argument("--resolution", action="append", metavar="WxH[:SHARE]",
                     help="the resolution mix, width x height as recommend and the dashboard "
                     "write it, repeatable (e.g. 768x1344:0.3; default 1024x1024)")
    cfg.add_argument("--max-batch", type=int, help="largest batch (default 1)")
    cfg.add_argument("--window-s", type=float, help="batching window (default 0.1)")
    cfg.add_argument("--steps", type=int, help="denoising steps (default 9)")
    cfg.add_argument("--caption-tokens", type=int, help="prompt tokens (default 64)")
    for name, default in SETTING_DEFAULTS.items():
        if name == "compile":
            cfg.add_argument("--compile", action="store_true", default=None,
                             help="regional torch.compile of the transformer")
        else:
            cfg.add_argument(f"--{name}", help=f"default {default}")
    run = p.add_argument_group("run")
    run.add_argument("--duration-s", type=float, default=120.0,
                     help="measured arrivals span this (default 120)")
    run.add_argument("--warmup-s", type=float, default=10.0,
                     help="arrivals in the first WARMUP_S are served, not measured (default 10)")
    run.add_argument("--limit-s", type=float,
                     help="wall-clock bound of the loop (default 2 x (duration + warm-up))")
    run.add_argument("--max-requests", type=int, default=100_000, help="cut the schedule here")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--soak", action="store_true",
                     help="also report memory growth per hour, service-time drift and errors")
    run.add_argument("--gpu", metavar="CATALOG-ID",
                     help="GPU the predictions are for (in process: this GPU's catalog entry)")
    run.add_argument("--name", help="results name (default <gpu>-<mode>-r<rate>)")
    run.add_argument("--out", type=Path, metavar="FILE.json",
                     help="results file (default data/loadtests/<name>.json)")
    run.add_argument("--no-predict", action="store_true", help="measure only")
    run.add_argument("--reanalyze", type=Path, metavar="FILE.json",
                     help="no new run: recompute a saved run's summaries, predictions and soak "
                          "analysis from its trace with the current models (written to --out, "
                          "default FILE itself)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    svc = p.add_argument_group("service")
    svc.add_argument("--url", help="send each request to this HTTP endpoint (POST, JSON)")
    svc.add_argument("--body", metavar="JSON",
                     help='request body template; "$prompt", "$height", "$width" are replaced '
                          '(default {"prompt": "$prompt", "height": "$height", "width": "$width"})')
    svc.add_argument("--max-inflight", type=int, default=64, help="--url: concurrent requests")
    svc.add_argument("--request-timeout-s", type=float, default=300.0, help="--url: per request")
    svc.add_argument("--replicas", type=int, default=1,
                     help="--url: GPUs behind the endpoint, for the predictions (default 1)")
    svc.add_argument("--fake", choices=["predicted"],
                     help="no pipeline: sleep the fitted service times (a CPU dry run)")
    svc.add_argument("--weights", default="auto", metavar="auto|synthetic|PATH",
                     help="as `advisor probe --weights`")
    svc.add_argument("--allow-download", action="store_true")
    svc.add_argument("--tiny", action="store_true", help="tiny pipeline (tests; needs --out)")
    svc.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    add_data_args(p)
    p.set_defaults(func=run_command)


def build_config(args: argparse.Namespace) -> tuple[LoadConfig, dict]:
    """The load test's config from the flags and --plan (flags win); and what --plan said."""
    from advisor.loadtest.arrivals import read_trace, trace_resolutions

    base: dict = {}
    plan_info: dict = {}
    if args.plan is not None:
        from advisor.export import load_plan

        if not args.plan.exists():
            raise AdvisorError(f"--plan {args.plan}: no such file")
        doc = load_plan(args.plan)
        options = doc["results"]["options"]
        if not 0 <= args.option < len(options):
            raise AdvisorError(f"--option {args.option}: the plan has {len(options)} option(s)")
        option, request = options[args.option], doc["request"]
        serving = option["fleet"]["serving_gpus"]
        base = {"resolutions": tuple(parse_resolution(f"{r.width}x{r.height}:{r.share}")
                                     for r in request.resolutions),
                "max_batch": option["max_batch"], "window_s": request.window_s,
                "steps": request.steps, "caption_tokens": request.caption_tokens,
                "setting": dict(option["setting"]), "gpu": option["gpu"],
                "rate_per_s": request.peak_images_per_s / serving}
        plan_info = {"plan": str(args.plan), "option": args.option, "serving_gpus": serving,
                     "peak_images_per_s": request.peak_images_per_s,
                     "plan_latency_s": {request.slo_label: option["latency"][request.slo_key]}}
    trace = None
    if args.trace is not None:
        trace = read_trace(args.trace, args.max_requests)
        base["resolutions"] = trace_resolutions(trace[1])
        base["rate_per_s"] = len(trace[0]) / max(float(trace[0][-1]), 1e-9)
    if args.rate is not None:
        if args.trace is not None:
            raise AdvisorError("--rate and --trace: give one (the trace sets the arrivals)")
        base["rate_per_s"] = args.rate
    if args.utilization is not None:
        if args.trace is not None or args.rate is not None:
            raise AdvisorError("--utilization sets the rate: leave out --rate and --trace")
        if not 0 < args.utilization < 1:
            raise AdvisorError(f"--utilization: expected 0 < U < 1, got {args.utilization}")
        base["rate_per_s"] = 1.0  # replaced once the models are loaded
    if base.get("rate_per_s") is None:
        raise AdvisorError("give the arrivals: --rate PER_S, --trace FILE or --plan PLAN.yaml")
    if args.resolution:
        if trace is not None:
            raise AdvisorError("--resolution and --trace: the trace sets the resolutions")
        base["resolutions"] = tuple(parse_resolution(r) for r in args.resolution)
    setting = dict(base.pop("setting", SETTING_DEFAULTS))
    for name in SETTING_DEFAULTS:
        if getattr(args, name) is not None:
            setting[name] = getattr(args, name)
    for flag, key in (("max_batch", "max_batch"), ("window_s", "window_s"), ("steps", "steps"),
                      ("caption_tokens", "caption_tokens"), ("gpu", "gpu")):
        if getattr(args, flag) is not None:
            base[key] = getattr(args, flag)
    base.setdefault("resolutions", (parse_resolution("1024x1024"),))
    config = LoadConfig(setting=setting, duration_s=args.duration_s, warmup_s=args.warmup_s,
                        limit_s=args.limit_s, max_requests=args.max_requests, seed=args.seed,
                        replicas=args.replicas, soak=args.soak, **base)
    if trace is not None:
        plan_info["trace"] = trace
    return config, plan_info


def rate_for_utilization(config: LoadConfig, models, target: float) -> LoadConfig:
    """The config at the Poisson rate whose simulated GPU busy fraction is `target`."""
    from advisor.loadtest.report import service_table
    from advisor.queueing import Simulation, simulate

    if models is None or config.gpu is None:
        raise AdvisorError("--utilization needs the fitted models and --gpu (or --plan)")
    service, _ = service_table(models, config.gpu, config)
    lo, hi = 0.0, config.replicas * config.max_batch / min(t[0] for t in service.times_s)
    sim = Simulation(requests=5000, warmup=500)
    for _ in range(30):
        mid = (lo + hi) / 2
        if simulate(service, mid, config.replicas, config.window_s, sim).utilization < target:
            lo = mid
        else:
            hi = mid
    return replace(config, rate_per_s=round((lo + hi) / 2, 4))


def run_command(args: argparse.Namespace) -> int:
    from advisor.loadtest import arrivals, report, results, run

    if not 1 <= args.max_inflight <= MAX_INFLIGHT:
        raise AdvisorError(f"--max-inflight: expected an integer 1..{MAX_INFLIGHT}, got "
                           f"{args.max_inflight}")
    if not 0 < args.request_timeout_s <= MAX_REQUEST_TIMEOUT_S:
        raise AdvisorError(f"--request-timeout-s: expected a number of seconds > 0, at most "
                           f"{MAX_REQUEST_TIMEOUT_S:g}, got {args.request_timeout_s}")
    if args.url is not None:
        run.check_url(args.url)
        if args.fake:
            raise AdvisorError("--url and --fake: give one service")
    if args.name is not None and not re.fullmatch(NAME, args.name):
        raise AdvisorError(f"--name {shown(args.name)}: expected letters, digits, '.', '_' or "
                           "'-' (it names the results file), at most 100")
    if args.out is not None:
        check_writable(args.out, "--out")
    if args.reanalyze is not None:
        return reanalyze(args)
    if args.url is not None:
        run.check_reachable(args.url, args.request_timeout_s)
    body = run.parse_body(args.body)
    config, info = build_config(args)
    trace_input = info.pop("trace", None)
    schedule = (arrivals.from_trace(*trace_input, config, args.trace) if trace_input
                else arrivals.poisson(config))
    if len(schedule) == 0:
        raise AdvisorError("the schedule holds no requests: raise --rate or --duration-s")

    models = None if args.no_predict else models_from_args(args)
    if args.utilization is not None:
        config = rate_for_utilization(config, models, args.utilization)
        schedule = arrivals.poisson(config)
    provenance: dict = {"arrivals": schedule.source, **info}
    progress = not args.no_progress and sys.stderr.isatty()
    if args.url is not None:
        mode = "http"
        service = run.HttpService(args.url, body, timeout_s=args.request_timeout_s)
        gpu = config.gpu or "endpoint"
        provenance["url"] = args.url
        trace = run.run_requests(schedule, config, service, args.max_inflight, progress)
    else:
        if args.fake:
            mode, gpu = "fake", config.gpu
            if models is None or gpu is None:
                raise AdvisorError("--fake predicted needs the fitted models and --gpu (or --plan)")
            table, _ = report.service_table(models, gpu, config)
            service = run.FakeService({(r.height, r.width): t for r, t in
                                       zip(config.resolutions, table.times_s)}, run.RealClock())
        else:
            mode = "in-process"
            missing = [n for n in PROBE_PACKAGES if importlib.util.find_spec(n) is None]
            if missing:
                raise AdvisorError(f"the in-process load test needs {', '.join(missing)}: "
                                   "pip install -e '.[probe]', or use --url / --fake predicted")
            from probes.serve import PipelineService

            service = PipelineService(config.setting, config.steps, config.caption_tokens,
                                      args.device, args.weights, args.allow_download, args.tiny)
            provenance.update(service.provenance)
            gpu = config.gpu or provenance["gpu"].get("catalog_id") or provenance["gpu"]["name"]
            config = replace(config, gpu=gpu)
        trace = run.run_batches(schedule, config, service, progress=progress)
    doc = summarize(trace, config, len(schedule), models, gpu, "soak" if args.soak else mode,
                    provenance)
    default = f"{gpu}-{'soak' if args.soak else mode}-r{config.rate_per_s:g}"
    name = args.name or re.sub(r"[^A-Za-z0-9._-]+", "-", default)  # a file name
    out = args.out or results.LOADTESTS_DIR / f"{name}.json"
    doc["name"] = name
    results.save(doc, out)
    print_summary(doc, out)
    if trace.stopped.startswith("interrupted"):
        return 130
    return failed_run(doc["measured"])


def failed_run(measured: dict) -> int:
    """1, with a message on stderr, when most requests sent failed or the endpoint stopped the
    run; else 0. The results file is written either way."""
    failed = measured["error_requests"]
    sent = measured["served_requests"] + failed
    if failed == 0 or (2 * failed <= sent and not measured["stopped"].startswith("endpoint")):
        return 0
    first = measured["errors"][0]["message"] if measured["errors"] else "no message"
    print(f"error: {failed} of {sent} requests sent failed ({measured['stopped']}); first "
          f"error: {escaped(first)}", file=sys.stderr)
    return 1


def reanalyze(args: argparse.Namespace) -> int:
    """`--reanalyze FILE`: the saved run's trace through `summarize` again."""
    from advisor.loadtest import results
    from advisor.loadtest.config import LoadConfig

    given = [flag for flag, value in (("--rate", args.rate), ("--utilization", args.utilization),
                                      ("--trace", args.trace), ("--plan", args.plan),
                                      ("--url", args.url), ("--fake", args.fake)) if value]
    if given:
        raise AdvisorError(f"--reanalyze reads a saved run: leave out {', '.join(given)}")
    old = results.load(args.reanalyze)
    config = LoadConfig.from_dict(old["config"])
    models = None if args.no_predict else models_from_args(args)
    doc = summarize(results.trace_of(old), config, old["requests"], models, old["gpu"],
                    old.get("mode", "in-process"), old.get("provenance", {}))
    doc.update(name=old.get("name", args.reanalyze.stem), created=old.get("created"),
               reanalyzed=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    out = args.out or args.reanalyze
    results.save(doc, out)
    print_summary(doc, out)
    return 0


def summarize(trace, config, requests: int, models, gpu, mode, provenance) -> dict:
    """The results document of a run of `requests` scheduled arrivals."""
    from advisor.loadtest import endpoint, report, results

    measured = report.measured(trace, config)
    doc = {"gpu": gpu, "mode": mode, "config": config.as_dict(),
           "rate_per_s": config.rate_per_s, "duration_s": config.duration_s,
           "requests": requests, "measured": measured,
           "predicted": None, "predicted_steady": None,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "provenance": provenance}
    predicted_finish = None
    if models is not None and gpu is not None and config.gpu is not None:
        service, basis = report.service_table(models, gpu, config)
        doc["predicted"], predicted_finish = report.same_arrivals(trace, config, service)
        doc["predicted"]["basis"] = basis
        own, own_basis = report.measured_service(endpoint.server_side(trace), config, service)
        doc["predicted"]["measured_service"] = {**report.same_arrivals(trace, config, own)[0],
                                                "basis": own_basis}
        doc["predicted_steady"] = report.steady_state(
            config, service, config.rate_per_s, measured["measured_requests"],
            measured["p95_ci_s"])
    endpoint_block = endpoint.overhead(trace, config)
    if endpoint_block is not None:  # an endpoint that reports its timings (`advisor serve`)
        doc["endpoint"] = endpoint_block
        if predicted_finish is not None:
            doc["predicted"]["with_overhead"] = endpoint.with_overhead(
                trace, config, predicted_finish, endpoint_block["by_resolution"])
    if config.soak:
        doc["soak"] = report.soak(trace, config)
        measured["memory_slope_mb_per_h"] = doc["soak"]["memory_slope_mb_per_h"]
    doc["trace"] = results.trace_block(trace, predicted_finish if predicted_finish is not None
                                       else [None] * len(trace.arrival_s))
    doc["samples"] = trace.samples
    return doc


def print_summary(doc: dict, out: Path) -> None:
    m, p, s = doc["measured"], doc.get("predicted") or {}, doc.get("predicted_steady") or {}

    def fmt(x):
        return "-" if x is None else f"{x:.2f}"

    def row(label: str, block: dict) -> str:  # a space before each column: wide values stay apart
        return f"{label:22}" + "".join(f" {fmt(block[k]):>8}" for k in ("p50_s", "p95_s", "p99_s"))

    print(f"{escaped(doc['name'])}: {doc['requests']} requests at {doc['rate_per_s']:g}/s, "
          f"{m['measured_requests']} measured; stopped: {m['stopped']}")
    print(f"{'':22}" + "".join(f" {k:>8}" for k in ("p50_s", "p95_s", "p99_s")))
    print(row("measured", m)
          + (f"   p95 {int(m['ci_level'] * 100)}% CI {fmt(m['p95_ci_s'][0])}-"
             f"{fmt(m['p95_ci_s'][1])}" if m["p95_ci_s"] else ""))
    if p:
        print(row("predicted, same arr.", p)
              + (f"   p95 error {p['p95_error_pct']:+.1f}%" if "p95_error_pct" in p else ""))
        plus = p.get("with_overhead") or {}
        if plus.get("p95_s") is not None:
            print(row("predicted + overhead", plus)
                  + f"   p95 error {plus['p95_error_pct']:+.1f}% (the endpoint's measured "
                    "overhead added)")
        own = p.get("measured_service") or {}
        if own.get("p95_s") is not None:
            print(row("replayed, run service", own)
                  + f"   p95 error {own['p95_error_pct']:+.1f}% (the policy alone)")
    if s:
        print(row("predicted, steady", s) + f"   utilization {s['utilization']:.0%}")
        print(f"  {s['run_length_note']}")
    prov = doc.get("provenance") or {}
    if prov.get("plan") and prov.get("serving_gpus", 1) > 1:
        (label, value), = prov["plan_latency_s"].items()
        print(f"  the plan's {label} {value:.2f} s is for {prov['serving_gpus']} GPUs behind one "
              f"dispatcher at {prov['peak_images_per_s']:.3g} img/s; this run is one GPU at its "
              f"1/{prov['serving_gpus']} share, which shares no queue with the others and so "
              "waits longer (the steady-state line above is that one GPU's)")
    util = m.get("utilization")
    print(f"throughput {fmt(m['throughput_img_per_s'])} img/s"
          + (f", GPU busy {util:.0%}" if util is not None else "")
          + f", batches {json.dumps(m['batch_size_histogram'])}, errors {m['error_requests']}")
    for label, block in ((doc.get("endpoint") or {}).get("by_resolution") or {}).items():
        print(f"endpoint overhead {label}: median {fmt(block['overhead_median_s'])} s, p95 "
              f"{fmt(block['overhead_p95_s'])} s (HTTP {fmt(block['http_median_s'])} s, PNG "
              f"{fmt(block['encode_median_s'])} s) over {block['requests']} requests")
    for line in (doc.get("soak") or {}).get("verdict", []):
        print(f"soak: {line}")
    print(f"-> {out}")
