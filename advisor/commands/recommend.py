"""`advisor recommend`: GPU, settings and fleet size for a request, ranked by cost; or re-check a
saved plan (`--plan PLAN.yaml --check`)."""
from __future__ import annotations

import argparse
import json
import textwrap

from advisor.commands.common import add_data_args, add_format_arg, models_from_args
from advisor.contract import LATENCY_BASES, PRECISIONS, QUANTIZATIONS
from advisor.errors import AdvisorError
from advisor.fileio import check_writable
from advisor.options import Bases, LossyAlternative, Option, Verdict

WIDTH = 100
EXPORTS = ("ray-serve", "kuberay")
DEFAULT_RAY_VERSION = "2.60.0"  # the version `advisor serve` was tested with

# flag -> dotted request field it overrides
OVERRIDES = {
    "images_per_day": "demand.images_per_day",
    "images_per_s": "demand.images_per_s",
    "peak_factor": "demand.peak_factor",
    "p95_s": "slo.p95_s",
    "p99_s": "slo.p99_s",
    "steps": "steps",
    "window_s": "batching.window_s",
    "mode": "deployment.mode",
    "latency_basis": "latency_basis",
    "max_gpus": "constraints.max_gpus",
    "max_usd_per_month": "constraints.max_usd_per_month",
    "n_plus_one": "constraints.n_plus_one",
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "recommend", help="GPU, settings and fleet size for a demand and latency SLO",
        description="Search every candidate GPU and setting (precision, batch, compile, "
        "attention, offload) that fits in memory, size the fleet that meets the latency SLO at "
        "peak demand by queueing simulation, and rank by cost. Flags override request fields. "
        "With --plan PLAN.yaml --check: re-validate a saved plan against the current catalog, "
        "measurements and models (exit 1 if it no longer holds).",
    )
    p.add_argument("--request", metavar="REQ.yaml",
                   help="request file (see examples/request.yaml); flags alone also work")
    p.add_argument("--plan", metavar="PLAN.yaml", help="a plan saved with --out (with --check)")
    p.add_argument("--check", action="store_true", help="re-validate the --plan file")
    p.add_argument("--out", metavar="PLAN.yaml",
                   help="save inputs, assumptions, provenance and results as YAML (with "
                   "--export: where the export goes; default stdout)")
    p.add_argument("--export", choices=EXPORTS,
                   help="with --plan: write the option's Ray Serve config (ray-serve) or a "
                   "KubeRay RayService manifest for its fleet (kuberay)")
    p.add_argument("--option", type=int, default=0, metavar="I",
                   help="with --export: which option of the plan (default 0, the best)")
    p.add_argument("--image", help="with --export kuberay: the container image (it must hold "
                   "this project with its serve and probe extras; default "
                   "rayproject/ray:<ray version>-py312-gpu, which does not)")
    p.add_argument("--ray-version", help="with --export kuberay: rayVersion (default the "
                   "installed ray's, else " + DEFAULT_RAY_VERSION + ")")
    add_format_arg(p, ("table", "json", "yaml"))
    p.add_argument("--top", type=int, default=5, help="options to show (default 5)")
    g = p.add_argument_group("request overrides")
    g.add_argument("--resolution", action="append", metavar="WxH[:SHARE]",
                   help="a resolution of the mix, e.g. 1344x768:0.3 (repeat; replaces the "
                   "file's mix)")
    g.add_argument("--images-per-day", type=float, help="average demand, images a day")
    g.add_argument("--images-per-s", type=float, help="average demand, images a second")
    g.add_argument("--peak-factor", type=float, help="peak / average demand (default 1)")
    g.add_argument("--p95-s", type=float, help="p95 end-to-end latency SLO, seconds")
    g.add_argument("--p99-s", type=float, help="p99 end-to-end latency SLO, seconds")
    g.add_argument("--steps", type=int, help="denoising steps (default 9)")
    g.add_argument("--gpus", help='comma-separated catalog ids, or "all"')
    g.add_argument("--segments", help="comma-separated: datacenter, workstation, consumer")
    g.add_argument("--precisions", help="comma-separated precisions the search may choose "
                   f"(default bf16): {', '.join(PRECISIONS)}; {', '.join(QUANTIZATIONS)} are "
                   "lossy (image quality not measured here)")
    g.add_argument("--window-s", type=float, help="batching window, seconds (default 0.1)")
    g.add_argument("--mode", choices=["cloud", "owned"], help="deployment (default cloud)")
    g.add_argument("--latency-basis", choices=LATENCY_BASES,
                   help="size service times on: auto (default: a GPU never probed on the upper "
                   "end of its 90%% interval, measured and fitted figures on the point), point "
                   "or upper (every figure)")
    g.add_argument("--max-gpus", type=int, help="largest fleet to consider (default 1024)")
    g.add_argument("--max-usd-per-month", type=float, help="monthly budget, USD")
    g.add_argument("--n-plus-one", action=argparse.BooleanOptionalAction, default=None,
                   help="one spare GPU beyond the fleet that meets the SLO")
    g.add_argument("--prices", metavar="PRICES.yaml",
                   help="your price sheet, over the catalog's and the request's prices: "
                   "prices: {rtx-4090: {buy_usd: 1999, cloud_usd_per_hour: 0.69, date: "
                   "2026-12-01, note: our quote}}")
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise AdvisorError(f"--top: expected an integer >= 1, got {args.top}")
    if args.export:
        return _export(args)
    if args.check or args.plan:
        return _check(args)
    from advisor.catalog import load_catalog
    from advisor.export import plan_document, provenance, save_plan
    from advisor.plan import recommend

    request = build_request(args)
    if args.out:
        check_writable(args.out, "--out")
    catalog = load_catalog(args.catalog)
    models = models_from_args(args)
    plan = recommend(request, models, catalog, top=args.top)
    prov = provenance(models, catalog, args.data)
    if args.out:
        save_plan(plan, args.out, prov)
    if args.format == "table":
        print(format_table(plan, prov, args.top))
        if args.out:
            print(f"\nPlan saved to {args.out}")
    else:
        print(_dump(plan_document(plan, prov), args.format))
    return 0


def build_request(args: argparse.Namespace):
    """The request file (or an empty one) with the flags applied, validated."""
    from advisor.request import Request

    overrides = {field: getattr(args, flag) for flag, field in OVERRIDES.items()
                 if getattr(args, flag) is not None}
    if args.resolution:
        overrides["resolutions"] = [_resolution(text) for text in args.resolution]
    for flag, field in (("gpus", "candidates.gpus"), ("segments", "candidates.segments"),
                        ("precisions", "settings.precisions")):
        text = getattr(args, flag)
        if text is not None:
            items = [x.strip() for x in text.split(",") if x.strip()]
            overrides[field] = "all" if items == ["all"] else items
    if args.request:
        request = Request.from_yaml(args.request, overrides)
    else:
        for section, flags in (("demand.images_per", "--images-per-day or --images-per-s"),
                               ("slo.p9", "--p95-s or --p99-s")):
            if not any(key.startswith(section) for key in overrides):
                raise AdvisorError(f"no --request file: give {flags}")
        request = Request.from_dict({}, source="command line", overrides=overrides)
    if args.prices:
        from advisor.price_sheet import load_sheet

        request = request.with_changes(prices={**request.prices, **load_sheet(args.prices)})
    return request


def _resolution(text: str) -> dict:
    size, _, share = text.partition(":")
    width, _, height = size.lower().partition("x")
    try:
        out = {"height": int(height), "width": int(width)}
        if share:
            out["share"] = float(share)
    except ValueError:
        raise AdvisorError(f"--resolution {text!r}: expected WIDTHxHEIGHT[:SHARE], e.g. "
                           "1344x768:0.3") from None
    return out


def _check(args: argparse.Namespace) -> int:
    if not (args.plan and args.check):
        raise AdvisorError("--plan and --check go together: advisor recommend --plan PLAN.yaml "
                           "--check")
    from advisor.catalog import load_catalog
    from advisor.export import check_plan

    catalog = load_catalog(args.catalog)
    models = models_from_args(args)
    report = check_plan(args.plan, models, catalog, args.data)
    if args.format == "table":
        print(format_check(report))
    else:
        print(_dump(report, args.format))
    return 0 if report["holds"] else 1


def _export(args: argparse.Namespace) -> int:
    """`--plan PLAN.yaml --export ray-serve|kuberay`: the option's deployment file."""
    import importlib.metadata
    from pathlib import Path

    from advisor.export import load_plan
    from advisor.fileio import write_atomic
    from advisor.serve.manifests import dump, rayservice, serve_config
    from advisor.serve.spec import spec_of

    if not args.plan:
        raise AdvisorError("--export needs --plan PLAN.yaml (a plan saved with --out)")
    if args.check:
        raise AdvisorError("--export and --check: give one")
    path = Path(args.plan)
    if not path.is_file():
        raise AdvisorError(f"--plan {path}: no such file")
    doc = load_plan(path)
    spec = spec_of(doc, path, args.option)
    fleet = doc["results"]["options"][args.option]["fleet"]
    header = (f"# {args.export} export of {path}, option {args.option}: {spec.replicas} "
              f"replica(s) on {spec.gpu}, batches up to {spec.max_batch}, window "
              f"{spec.window_s:g} s (advisor recommend --export {args.export})\n")
    if args.export == "ray-serve":
        out = serve_config(spec)
    else:
        try:
            version = args.ray_version or importlib.metadata.version("ray")
        except importlib.metadata.PackageNotFoundError:
            version = DEFAULT_RAY_VERSION
        image = args.image or f"rayproject/ray:{version}-py312-gpu"
        gpus_per_server = doc["request"].deployment.gpus_per_server
        out = rayservice(spec, fleet["total_gpus"], gpus_per_server, image, version)
        header += (f"# fleet: {fleet['total_gpus']} GPUs ({fleet['serving_gpus']} serving, "
                   f"{fleet.get('spare_gpus', 0)} spare) in servers of {gpus_per_server}\n")
    text = header + dump(out)
    if args.out:
        write_atomic(args.out, text)
        print(f"{args.export} export written to {args.out}")
    else:
        print(text, end="")
    return 0


def _dump(doc: dict, fmt: str) -> str:
    import yaml

    if fmt == "json":
        return json.dumps(doc, indent=2)
    return yaml.safe_dump(doc, sort_keys=False, width=WIDTH).rstrip()


# --------------------------------------------------------------------------- table


def format_table(plan, prov: dict, top: int) -> str:
    r = plan.request
    q = r.slo_key
    other = "p99_s" if q == "p95_s" else "p95_s"
    mix = ", ".join(f"{x.label} {x.share:.0%}" for x in r.resolutions)
    spare = "+1" if r.n_plus_one else ""
    lines = [
        f"Z-Image-Turbo plan: {r.images_per_s:.3g} img/s average, {r.peak_images_per_s:.3g} "
        f"img/s peak; {r.slo_label} <= {r.slo_s:g} s end to end",
        f"Mix: {mix}; {r.steps} steps, {'CFG' if r.cfg else 'no CFG'}; {r.deployment.mode}"
        + ("; N+1" if r.n_plus_one else ""),
        "",
    ]
    if plan.options:
        lines.append(f"{'#':>2}  {'GPU':<23}{'GPUs':>7}{'batch':>6}{q[:3] + ' s':>7}"
                     f"{other[:3] + ' s':>7}{'util':>6}{'headrm':>7}{'$/1k img':>9}"
                     f"{'$/month':>11}{'capex $':>12}")
        for o in plan.options[:top]:
            lines += _option_lines(o, q, other, spare)
        lines += _wrap(f"util: GPU utilization at peak demand; headrm: how far the {q[:3]} "
                       f"latency at peak stays below the {r.slo_s:g} s SLO; both from the "
                       "queueing simulation", "", "  ")
        rest = ", ".join(f"{o.gpu} {o.fleet.total_gpus} GPUs "
                         f"${o.cost.usd_per_month:,.0f}/month (util "
                         f"{o.latency.utilization_at_peak:.0%}, headroom "
                         f"{o.slo_headroom:.0%}, {o.evidence})" for o in plan.options[top:])
        if rest:
            lines += ["", "Also meeting the request (ranked, cheapest option of each GPU):"]
            lines += _wrap(rest, "  ")
    else:
        lines.append("No option meets the request; the reasons per GPU follow.")
    lines += _price_needed_lines(plan.price_needed, q, spare)
    lines += _frontier_lines(plan.frontier, q)
    lines += _lossy_lines(plan.lossy_alternatives)
    lines += _gpu_lines("Fits, but no fleet meets the request:", plan.infeasible)
    lines += _gpu_lines("Does not fit:", plan.unfit)
    lines += _grouped_lines("Not searched:", plan.excluded)
    if plan.not_simulated:
        bounds = ", ".join(f"{x.gpu} >= ${x.usd_per_month_at_least:,.0f}"
                           for x in plan.not_simulated)
        lines += ["", "Not sized (monthly cost lower bound above the options shown):"]
        lines += _wrap(bounds, "  ")
    lines += ["", "Where the figures come from:"] + _sources(plan, prov)
    lines += ["", "Assumptions:"]
    for a in plan.assumptions:
        lines += _wrap(a, "  - ", "    ")
    return "\n".join(lines)


def _option_lines(o: Option, q: str, other: str, spare: str) -> list[str]:
    c, fleet, latency = o.cost, o.fleet, o.latency
    kw = "n/a" if c.power_kw is None else f"{c.power_kw:.1f}"
    row = (f"{o.rank:>2}  {o.gpu:<23}{str(fleet.serving_gpus) + spare:>7}"
           f"{o.max_batch:>6}{latency.at(q):>7.2f}{latency.at(other):>7.2f}"
           f"{latency.utilization_at_peak:>6.0%}{o.slo_headroom:>7.0%}"
           f"{c.usd_per_1k_images:>9.3f}{c.usd_per_month:>11,.0f}{c.capex_usd:>12,.0f}")
    intervals = "; ".join(
        f"{label} b1 {s.batch_1_s:.2f} s [{s.batch_1_interval_s[0]:.2f}-"
        f"{s.batch_1_interval_s[1]:.2f}] {s.batch_1_source}"
        + (", sized on the upper end" if s.sized_on == "upper" else "")
        for label, s in o.service.items())
    detail = (f"{o.setting.label}; {fleet.servers} server(s), {kw} kW; batch "
              f"latency ({'/'.join(o.sources)}): {intervals}; how sure: {o.accuracy}; "
              f"price: {c.price.source}")
    test = latency.short_test
    if test and test.range_s:
        lo, hi = test.range_s
        detail += (f"; {q[:3]} {latency.at(q):.2f} s is the long run: a load test of "
                   f"{test.length} at peak ({test.requests:,} requests) "
                   f"measures {lo:.2f}-{hi:.2f} s in 90% of runs")
    return ([row] + _wrap(detail, "    ") + _wrap(o.reason, "    why: ", "    ")
            + _wrap(bases_text(o.bases), "    point and hedge: ", "    ")
            + [line for note in o.caveats for line in _wrap(note, "    caveat: ", "    ")])


def bases_text(bases: Bases | None) -> str:
    """An option's point- and upper-basis fleets and costs, what probing settles, the probe."""
    if not bases:
        return ""
    def fleet(b) -> str:
        if not b.total_gpus:
            return f"no fleet ({b.reason})"
        usd = "" if b.usd_per_month is None else f", ${b.usd_per_month:,.0f}/month"
        return f"{b.total_gpus} GPUs{usd}"
    probe = bases.probe
    text = (f"sized on the point prediction {fleet(bases.point)}; on the 90% interval's "
            f"upper end {fleet(bases.upper)} (ranked on {bases.ranked_on})")
    if bases.settles_gpus is not None:
        usd = ("" if bases.settles_usd_per_month is None
               else f", ${bases.settles_usd_per_month:,.0f}/month")
        text += f"; probing this GPU can settle {bases.settles_gpus} GPUs{usd}"
    minutes = ("" if probe.gpu_minutes is None
               else f" (about {probe.gpu_minutes:.0f} GPU minutes: {probe.basis})")
    return text + f"; on one {probe.gpu}: `{probe.command}`{minutes}"


def _price_needed_lines(options: list[Option], q: str, spare: str) -> list[str]:
    """GPUs sized without a price: their fleet, latency and the field that prices them."""
    if not options:
        return []
    lines = ["", "Sized, but no price to rank them by (fewest GPUs first; give a price to "
             "compare):"]
    for o in options:
        lines += _wrap(
            f"{o.gpu}: {o.fleet.serving_gpus}{spare} GPUs, batch {o.max_batch}, "
            f"{o.setting.label}, {q[:3]} {o.latency.at(q):.2f} s "
            f"({o.evidence}); price needed: {o.cost.price_needed.reason}", "  ", "    ")
        lines += _wrap(bases_text(o.bases), "    point and hedge: ", "    ")
    return lines


def _frontier_lines(frontier: list[Option], q: str) -> list[str]:
    if not frontier:
        return []
    lines = ["", f"Cost / {q[:3]} frontier (each option is faster than every cheaper one):"]
    for o in frontier:
        lines.append(
            f"  ${o.cost.usd_per_month:>10,.0f}/month  {q[:3]} {o.latency.at(q):6.2f} s  "
            f"headroom {o.slo_headroom:>4.0%}  {o.fleet.total_gpus} x {o.gpu} batch "
            f"{o.max_batch} {o.setting.label}")
    return lines


def _lossy_lines(alternatives: list[LossyAlternative]) -> list[str]:
    """What each lossy precision the request leaves out would change, with the caveat."""
    if not alternatives:
        return []
    lines = ["", "Lossy precisions the request does not allow (settings.precisions), and what "
             "each would change:"]
    lines += _wrap(f"quality: {alternatives[0].caveat}", "  ", "    ")
    for alt in alternatives:
        first, *rest = alt.summary
        lines += _wrap(first, "  - ", "    ")
        for sentence in rest:
            lines += _wrap(sentence, "    ", "      ")
    return lines


def _gpu_lines(title: str, items: list[Verdict]) -> list[str]:
    if not items:
        return []
    lines = ["", title]
    for item in items:
        lines += _wrap(f"{item.gpu}: {item.reason}", "  ", "    ")
    return lines


def _grouped_lines(title: str, items: list[Verdict]) -> list[str]:
    """One line per distinct reason, naming the GPUs it applies to."""
    if not items:
        return []
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(item.reason.replace(item.gpu, "<id>"), []).append(item.gpu)
    lines = ["", title]
    for reason, gpus in groups.items():
        lines += _wrap(f"{', '.join(gpus)}: {reason}", "  ", "    ")
    return lines


def _sources(plan, prov: dict) -> list[str]:
    model = prov["model"]
    errors = ", ".join(f"{k} {v:.1f}%" for k, v in model["validation"].items()
                       if isinstance(v, (int, float)))
    out = [
        f"  service times and memory: fitted models {model['version']} "
        f"({errors or 'no validation error available'}); per option: measured/fitted/"
        "transferred and the 90% interval",
        f"  GPU specs and prices: {prov['catalog']['path']} (sha256 "
        f"{prov['catalog']['sha256'][:12]}) or the request, per option",
        f"  latency percentiles: {plan.request.simulation.describe()}",
        f"  search: {plan.search['gpus']} GPUs, {plan.search['predictions']} predictions, "
        f"{plan.search['candidates']} candidates, {plan.search['candidates_simulated']} sized "
        f"by {plan.search['simulations']} simulations",
    ]
    lossy = plan.search.get("lossy")
    if lossy:
        out.append(f"  lossy alternatives: {lossy['predictions']} predictions, "
                   f"{lossy['candidates']} candidates, {lossy['candidates_simulated']} sized by "
                   f"{lossy['simulations']} simulations")
    return [line for text in out for line in _wrap(text.strip(), "  ", "    ")]


def _wrap(text: str, first: str, rest: str | None = None) -> list[str]:
    if not text:
        return []
    return textwrap.wrap(text, WIDTH, initial_indent=first,
                         subsequent_indent=rest if rest is not None else first)


def format_check(report: dict) -> str:
    verdict = "HOLDS" if report["holds"] else "NO LONGER HOLDS"
    lines = [f"Plan {report['plan']}: {verdict}"]
    if report["option"]:
        o = report["option"]
        lines.append(f"  saved pick: {o['serving_gpus']} x {o['gpu']}, batch {o['max_batch']}")
    if report["problems"]:
        lines += ["", "Problems:"]
        for problem in report["problems"]:
            lines += _wrap(problem, "  - ", "    ")
    if report["changes"]:
        lines += ["", "Changed since the plan was saved:"]
        for change in report["changes"]:
            lines += _wrap(change, "  - ", "    ")
    else:
        lines += ["", "Nothing changed since the plan was saved."]
    return "\n".join(lines)
