"""The Plan page's results: the answer in words, the options as tables, the fleet as demand
scales, and the plan file for download."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd

from advisor.catalog import Catalog
from advisor.contract import QUALITY_CAVEAT, QUANTIZATIONS
from advisor.cost import FleetCost
from advisor.fileio import sha256_file
from advisor.loadtest.results import LOADTESTS_DIR
from advisor.options import Bases, Option, ShortTest

DEMAND_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
SURE_WORDS = {  # by an option's least sure figure
    "measured": "Most sure: every service time is measured on this GPU.",
    "fitted": "Fairly sure: fitted on measurements of this GPU.",
    "transferred": "Least sure: no measurements on this GPU; its speed is carried over from the "
                   "probed GPUs by its specs. Probe one before buying many.",
}
# The planning code (below advisor/) whose changes invalidate plans cached across restarts.
PLANNER_FILES = ("contract.py", "plan.py", "options.py", "search.py", "cost.py", "explain.py",
                 "queueing.py", "request.py", "export.py", "probing.py", "overhead.py",
                 "app/plan_results.py")


def options_frame(options: list[Option], request) -> pd.DataFrame:
    """One row per plan option: what to buy, how many, what it costs, how fast, how sure."""
    rows = [{
        "rank": o.rank, "gpu": o.gpu, "gpu_name": o.gpu_name, "label": option_label(o),
        "setting": o.setting.label, "max_batch": o.max_batch,
        "total_gpus": o.fleet.total_gpus, "serving_gpus": o.fleet.serving_gpus,
        "servers": o.fleet.servers, "usd_per_month": o.cost.usd_per_month,
        "usd_per_1k_images": o.cost.usd_per_1k_images, "capex_usd": o.cost.capex_usd,
        "latency_s": o.latency.at(request.slo_key),
        **_short_test(o.latency.short_test),
        "utilization_pct": 100 * o.latency.utilization_at_peak,
        "headroom_pct": 100 * o.slo_headroom,
        "per_gpu_img_per_s": o.capacity_img_per_s / o.fleet.serving_gpus,
        "sources": ", ".join(o.sources), "basis": o.evidence,
        "price_source": price_source(o.cost),
        **bases_columns(o.bases),
        "reason": o.reason, "caveats": "; ".join(o.caveats),
    } for o in options]
    return pd.DataFrame(rows)


# The price fields a price source names (advisor.cost), as a person says them.
PRICE_FIELDS = {"cloud_usd_per_hour": "cloud price per GPU-hour", "price_usd": "purchase price"}


def price_source(cost: FleetCost) -> str:
    """Where an option's price came from, or which field would give one."""
    if cost.price:
        words = cost.price.source.split()
        return " ".join(PRICE_FIELDS.get(w, w) for w in words)
    return f"price needed: {cost.price_needed.reason}"


def bases_columns(bases: Bases | None) -> dict:
    """An option's point and upper-basis fleets and costs side by side, what probing the GPU
    can settle, and the probe (plan option `bases`; None cells for probed GPUs)."""
    if not bases:  # measured or fitted figures: one basis, nothing a probe would settle
        return {"gpus_point_upper": "probed GPU", "usd_point_upper": "probed GPU",
                "probing_settles": "", "probe": ""}
    point, upper = bases.point, bases.upper
    gpus = lambda b: str(b.total_gpus) if b.total_gpus else "none meets the SLO"
    usd = lambda b: "-" if b.usd_per_month is None else f"${b.usd_per_month:,.0f}"
    minutes = bases.probe.gpu_minutes
    return {
        "gpus_point_upper": f"{gpus(point)} / {gpus(upper)}",
        "usd_point_upper": f"{usd(point)} / {usd(upper)}",
        "probing_settles": None if bases.settles_gpus is None else (
            f"{bases.settles_gpus} GPUs" + ("" if bases.settles_usd_per_month is None
                                            else f", ${bases.settles_usd_per_month:,.0f}/month")),
        "probe": bases.probe.command + ("" if minutes is None
                                        else f" (about {minutes:.0f} GPU min)"),
    }


def price_needed_frame(plan) -> pd.DataFrame:
    """GPUs sized without a price (plan.price_needed): fleet, latency and the field to set."""
    frame = options_frame(plan.price_needed, plan.request)
    if not frame.empty:
        frame["price_field"] = [o.cost.price_needed.field for o in plan.price_needed]
    return frame


def _short_test(test: ShortTest | None) -> dict:
    """A short load test's 90% range of the SLO quantile (an option's latency.short_test), as
    text."""
    spread = test.range_s if test else None
    return {"short_test": (f"{spread[0]:.2f}-{spread[1]:.2f} s ({test.length}, "
                           f"{test.requests:,} req.)") if spread else None}


def frontier_frame(frontier: list[Option], request) -> pd.DataFrame:
    """The cost / latency frontier as options_frame rows, with where each stands in the
    ranking ("#1", or "not ranked": another batch or fleet size of a ranked GPU)."""
    frame = options_frame(frontier, request)
    frame["ranking"] = [f"#{o.rank}" if o.rank else "not ranked" for o in frontier]
    return frame


def option_label(option: Option) -> str:
    """An option in a few words, the same on the chart and in the tables: "13 × h100-sxm-80gb,
    batch ≤ 2"."""
    return f"{option.fleet.total_gpus} × {option.gpu}, batch ≤ {option.max_batch}"


def reasons_markdown(options: list[Option]) -> str:
    """Why each ranked option has its batch and fleet, what its figures cannot tell and, for a
    GPU never probed, the probe that would settle it, in full (a table cell would cut them
    short)."""
    lines = []
    for o in options:
        lines.append(f"{o.rank}. **{o.gpu_name}** ({option_label(o)}): {o.reason}")
        lines += [f"    - ⚠ {note}" for note in o.caveats]
        if o.bases:
            probe = bases_columns(o.bases)["probe"]
            lines.append(f"    - probing one such GPU settles it: `{probe}`")
    return "\n".join(lines)


def lossy_frame(plan) -> pd.DataFrame:
    """One row per lossy precision the request leaves out and option it would give (the
    cheapest with it, the cheapest on the chosen GPU): fleet, cost and their change from the
    chosen option; and the GPUs it fits without offload where nothing requested does."""
    rows = []
    for alt in plan.lossy_alternatives:
        fits = ", ".join(f.gpu for f in alt.fits_without_offload)
        found = [(what, o) for what, o in (("cheapest with it", alt.best),
                                           ("on the chosen GPU", alt.on_chosen_gpu)) if o]
        # none: the sentences below the table say why (nothing cheaper, none meets it, ...)
        for what, o in found or [("no option", None)]:
            change = o.versus_chosen if o else None
            rows.append({
                "precision": alt.precision, "what": what,
                "option": option_label(o) if o else None,
                "setting": o.setting.label if o else None,
                "usd_per_month": o.cost.usd_per_month if o else None,
                "gpus_change": change.total_gpus if change else None,
                "usd_per_month_change": change.usd_per_month if change else None,
                "latency_s": o.latency.at(plan.request.slo_key) if o else None,
                "fits_without_offload": fits, "quality": QUALITY_CAVEAT})
    return pd.DataFrame(rows)


def lossy_markdown(plan) -> str:
    """What each lossy precision the request leaves out would change, in sentences."""
    return "\n".join(
        f"- **{alt.precision}** ({QUANTIZATIONS[alt.precision].words}): "
        + "; ".join(alt.summary).removeprefix(f"{alt.precision}: ")
        for alt in plan.lossy_alternatives)


def not_recommended_frame(plan) -> pd.DataFrame:
    """Every searched or excluded GPU without an option, with the reason."""
    rows = [{"gpu": v.gpu, "verdict": verdict, "reason": v.reason}
            for verdict, items in (("cannot meet the request", plan.infeasible),
                                   ("does not fit in memory", plan.unfit),
                                   ("not searched", plan.excluded),
                                   ("not sized", plan.not_simulated))
            for v in items]
    return pd.DataFrame(rows, columns=["gpu", "verdict", "reason"])


def headline(plan) -> dict:
    """The answer in plain words: what to buy, how many, what it costs, how sure we are."""
    r = plan.request
    best = plan.best()
    if best is None:
        return {"ok": False, "text": "No priced GPU in the search meets this request. The "
                "reasons per GPU are listed below: relax the SLO, lower the demand, allow more "
                "GPUs, or give a price to a GPU sized without one."}
    fleet, cost = best.fleet, best.cost
    verb = "Rent" if r.deployment.mode == "cloud" else "Buy"
    spare = f" ({fleet.serving_gpus} serving + {fleet.spare_gpus} spare)" \
        if fleet.spare_gpus else ""
    sure = (SURE_WORDS[best.evidence] + f" How far off: {best.accuracy}. The fleet is "
            + ("sized on the slow end of that interval." if best.sized_on_upper
               else "sized on the point prediction."))
    return {
        "ok": True,
        "text": (f"{verb} **{fleet.total_gpus} × {best.gpu_name}**{spare} in "
                 f"{fleet.servers} server(s) of {r.deployment.gpus_per_server}, run with "
                 f"{best.setting.label}, batches up to {best.max_batch}."),
        "usd_per_month": cost.usd_per_month, "usd_per_1k_images": cost.usd_per_1k_images,
        "capex_usd": cost.capex_usd, "latency_s": best.latency.at(r.slo_key),
        "slo": f"{r.slo_label} ≤ {r.slo_s:g} s", "sure": sure,
        "sources": ", ".join(best.sources), "price_source": price_source(cost),
        "model_version": best.model_version,
        "lossy": (f"{best.setting.precision}: {QUALITY_CAVEAT}"
                  if best.setting.precision in QUANTIZATIONS else ""),
    }


def fleet_vs_demand(plan, models, catalog, top: int = 3,
                    factors: tuple[float, ...] = DEMAND_FACTORS) -> pd.DataFrame:
    """GPUs each of the top options needs as the demand scales (its GPU, setting and max
    batch fixed; the fleet re-sized by the planner at each demand)."""
    from advisor.plan import recommend

    rows = []
    for o in plan.options[:top]:
        s = o.setting
        fixed = plan.request.with_changes(
            gpus=(o.gpu,), segments=None, precisions=(s.precision,),
            compile=(s.compile,), attention=(s.attention,), offload=(s.offload,),
            batches=tuple(b for b in plan.request.batches if b <= o.max_batch))
        for f in factors:
            best = recommend(fixed.with_changes(images_per_s=plan.request.images_per_s * f),
                             models, catalog, top=1, lossy=False).best()
            rows.append({"option": f"{o.gpu} ({s.label}, batch ≤ "
                                   f"{o.max_batch}; {o.evidence} times)",
                         "peak_img_per_s": plan.request.peak_images_per_s * f,
                         "total_gpus": best.fleet.total_gpus if best else None})
    return pd.DataFrame(rows)


def planner_key(catalog: Catalog) -> str:
    """Identity of the planning code, the catalog and the HTTP load tests the endpoint overhead
    is measured on (advisor.overhead), for caching plans across restarts (the models' own
    version covers the measurements and the modelling code)."""
    h = hashlib.sha256(catalog.sha256.encode())
    for name in PLANNER_FILES:
        h.update((Path(__file__).parent.parent / name).read_bytes())
    for path in sorted(Path(LOADTESTS_DIR).glob("*.json")):
        h.update(path.name.encode() + sha256_file(path).encode())
    return h.hexdigest()[:16]


def plan_yaml(plan, models, catalog, uploads: dict[str, str] | None = None) -> str:
    """The plan file (advisor.export) as text, for download; uploads in use are recorded in
    its provenance beside the shipped measurement files."""
    from advisor.export import provenance, save_plan

    prov = provenance(models, catalog)
    if uploads:
        prov["uploads"] = [{"file": name, "sha256": hashlib.sha256(text.encode()).hexdigest()}
                           for name, text in sorted(uploads.items())]
    with tempfile.TemporaryDirectory(prefix="advisor-plan-") as tmp:
        path = Path(tmp) / "plan.yaml"
        save_plan(plan, path, prov)
        return path.read_text(encoding="utf-8")
