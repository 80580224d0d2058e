"""The plan in words: why each top option has its batch and fleet size, why a GPU has no option,
and the assumptions every figure rests on."""
from __future__ import annotations

import math

from advisor.contract import QUALITY_CAVEAT
from advisor.cost import HOURS_PER_MONTH, fleet_cost
from advisor.options import LossyAlternative, Option, Verdict
from advisor.overhead import DEFAULT_S as DEFAULT_OVERHEAD_S
from advisor.request import Request
from advisor.search import PARETO_COST_WINDOW, SPEC_RULES, Candidate, GpuNotes

# A near-tie: two options whose monthly costs differ by at most this fraction of the cheaper
# one. The ranking then prefers the one whose figures rest on firmer evidence
# (advisor.plan.rank_by_evidence): a 2% saving does not pay for figures that may be 40% off.
NEAR_TIE = 0.02


def reason(option: Option, candidates: list[Candidate], request: Request) -> str:
    """One line: why this max batch (what the next larger one would do), why this many GPUs."""
    label = request.slo_label
    b, n = option.max_batch, option.fleet.serving_gpus
    per_gpu = option.capacity_img_per_s / n
    same = {c.max_batch: c for c in candidates
            if c.gpu.id == option.gpu and c.setting == option.setting}
    why_batch = f"batch {b}: {per_gpu:.2f} img/s per GPU at full batches"
    larger = [k for k in request.batches if k > b]
    if not larger:
        why_batch += "; the largest batch searched"
    elif same[b].larger_misfit:
        why_batch += f"; batch {larger[0]} does not fit ({same[b].larger_misfit})"
    elif larger[0] in same:
        why_batch += f"; batch {larger[0]} " + _batch_outcome(same[larger[0]], n, request)
    n_text = _gpus(n) + (" + 1 spare (N+1)" if request.n_plus_one else "")
    trials = dict(option.fleet.simulated)
    if n == 1:
        why_n = "the smallest fleet"
    elif n - 1 in trials:
        why_n = f"{_gpus(n - 1)} {'give' if n > 2 else 'gives'} {label} {trials[n - 1]:.2f} s"
    else:
        why_n = f"{_gpus(n - 1)} cannot keep up with {request.peak_images_per_s:.2f} img/s"
    near_tie = f" Ranked {option.near_tie}." if option.near_tie else ""
    return (f"{why_batch}. {n_text}: the fewest with {label} "
            f"{option.latency.at(request.slo_key):.2f} s <= {request.slo_s:g} s at peak "
            f"({why_n}).{near_tie}")


def _gpus(n: int) -> str:
    return f"{n} GPU" + ("s" if n != 1 else "")


def _batch_outcome(c: Candidate, n: int, request: Request) -> str:
    """What a larger max batch of the chosen setting would have needed, for the reason line."""
    if c.rejected:
        return f"cannot serve the request: {c.rejected}"
    if c.sizing is None:
        return f"needs at least {c.n_lower} GPUs even at full batches (not simulated)"
    if c.sizing.gave_up_above is not None:
        return c.sizing.reason
    if c.sizing.n_gpus == n:
        latency = c.sizing.result.quantile_s(request.slo_quantile)
        return f"needs as many GPUs, with {request.slo_label} {latency:.2f} s"
    return f"needs {c.sizing.n_gpus} GPUs"


# --------------------------------------------------------------------------- GPUs without one


def gpu_verdicts(candidates: list[Candidate], notes: dict[str, GpuNotes], shown: set,
                 request: Request) -> tuple[list[Verdict], list[Verdict]]:
    """Per GPU without an option: infeasible (fits, but no fleet meets the request) or unfit
    (nothing fits in memory, or only offload settings that cannot meet it)."""
    infeasible, unfit = [], []
    by_gpu: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_gpu.setdefault(c.gpu.id, []).append(c)
    for gpu_id, note in notes.items():
        if gpu_id in shown:
            continue
        found = by_gpu.get(gpu_id, [])
        rejected = [c for c in found if c.rejected]
        if note.no_precision:
            unfit.append(Verdict(gpu_id, note.no_precision))
        elif not found or note.offload_only:
            if found and len(rejected) < len(found):
                continue  # offload candidates not simulated: cannot beat the options shown
            unfit.append(Verdict(gpu_id, _unfit_reason(note, rejected, request)))
        elif rejected and len(rejected) == len(found):
            best = min(rejected, key=lambda c: c.latency_floor_s)
            infeasible.append(Verdict(gpu_id, f"best {best.setting.label} batch "
                                      f"{best.max_batch}: {best.rejected}"))
    return infeasible, unfit


def _unfit_reason(note: GpuNotes, rejected: list[Candidate], request: Request) -> str:
    smallest = note.smallest
    setting, pred = smallest["none"] if "none" in smallest else smallest["offload"]
    m = pred.memory
    text = (f"needs {m.allocated_gb:.1f} GB + {m.margin_gb:.1f} GB margin at batch 1 "
            f"({setting.label}), has {m.capacity_gb:.1f} GB")
    if "offload" not in smallest:
        searched = any(o != "none" for o in request.offload)
        return text + ("" if searched else "; offload not searched (settings.offload)")
    if not rejected:
        needed = smallest["offload"][1].memory.needed_gb
        return text + f"; does not fit even with offload (needs {needed:.1f} GB)"
    fastest = min(rejected, key=lambda c: c.latency_floor_s)
    why = (f"too slow for the {request.slo_label} <= {request.slo_s:g} s SLO"
           if fastest.latency_floor_s > request.slo_s else fastest.rejected)
    return (text + f"; fits only with {fastest.setting.offload} offload at "
            f"{fastest.service.times_s[0][0]:.1f} s per {request.resolutions[0].label} image, "
            f"{why}")


def not_simulated(candidates: list[Candidate], seen: set, request: Request) -> list[Verdict]:
    """GPUs not listed otherwise whose sizing stopped at the cost of the options found, each
    with a lower bound on its monthly cost."""
    best: dict[str, float] = {}
    for c in candidates:
        if c.gpu.id in seen:
            continue
        if c.sizing is None:
            bound = c.cost_lower
        elif c.sizing.gave_up_above is not None:  # no fleet up to that many GPUs met the SLO
            bound = max(c.cost_lower, fleet_cost(request, c.price, c.gpu_w, c.sizing.gave_up_above
                                                 + 1 + request.n_plus_one).usd_per_month)
        else:
            continue
        best[c.gpu.id] = min(best.get(c.gpu.id, math.inf), bound)
    return [Verdict(g, f"costs at least ${v:,.0f}/month, more than the options listed", v)
            for g, v in sorted(best.items(), key=lambda kv: kv[1])]


# --------------------------------------------------------------------------- lossy precisions


def lossy_summary(entry: LossyAlternative, chosen: Option | None,
                  request: Request) -> tuple[str, ...]:
    """What allowing one lossy precision would change (an entry of Plan.lossy_alternatives),
    in sentences."""
    q = entry.precision
    if entry.error:
        return (f"{q}: {entry.error}",)
    best, same = entry.best, entry.on_chosen_gpu
    if best:
        out = [f"{q}: {_fleet(best, request)}" + (f": {_change(best)} than the chosen plan"
                                                  if chosen else ": meets the request")]
    else:
        out = [f"{q}: nothing cheaper than the chosen plan" if chosen
               else f"{q}: still no option meets the request"]
    if same:
        out.append(f"on {same.gpu}: {_fleet(same, request)}: {_change(same)}")
    if chosen and chosen.gpu in entry.not_offered:
        out.append(f"not offered on {chosen.gpu}: {entry.not_offered[chosen.gpu]}")
    fits = entry.fits_without_offload
    fast = [f for f in fits if f.meets_slo_at_batch_1]
    slow = [f for f in fits if not f.meets_slo_at_batch_1]
    where = "fits without offload where nothing requested does"
    if fast:
        out.append(f"{where} (batch 1, {fast[0].resolution}): " + ", ".join(
            f"{f.gpu} {f.batch_1_s:.2f} s ({f.setting.label}, {f.source}, "
            f"fits up to batch {f.max_batch})" for f in fast))
    if slow:
        out.append(f"{'also ' if fast else ''}{where}, but too slow for the {request.slo_label} "
                   f"<= {request.slo_s:g} s SLO even at batch 1 with no queueing: "
                   + ", ".join(f"{f.gpu} {request.slo_label} >= {f.latency_floor_s:.2f} s"
                               for f in slow))
    return tuple(out)


def _fleet(option: Option, request: Request) -> str:
    fleet = option.fleet
    spare = f"+{fleet.spare_gpus}" if fleet.spare_gpus else ""
    return (f"{fleet.serving_gpus}{spare} x {option.gpu} "
            f"({option.setting.label}, batch {option.max_batch}), "
            f"${option.cost.usd_per_month:,.0f}/month, {request.slo_label} "
            f"{option.latency.at(request.slo_key):.2f} s")


def _change(option: Option) -> str:
    """How an option's fleet and monthly cost differ from the chosen one's."""
    n, usd = option.versus_chosen.total_gpus, option.versus_chosen.usd_per_month
    gpus = "as many GPUs" if n == 0 else \
        f"{abs(n)} {'fewer' if n < 0 else 'more'} GPU{'s' if abs(n) != 1 else ''}"
    return f"{gpus}, ${abs(usd):,.0f} {'less' if usd <= 0 else 'more'} a month"


# --------------------------------------------------------------------------- assumptions

BASIS_WORDS = {
    "auto": "the fitted models' point prediction for measured and fitted figures, the upper end "
            "of the 90% interval for transferred ones (GPUs never probed, whose error is widest)",
    "point": "the fitted models' point prediction (latency_basis: point), transferred figures "
             "included",
    "upper": "the upper end of the 90% interval of every figure (latency_basis: upper)",
}


def assumptions(request: Request, lossy: bool = False) -> list[str]:
    """The assumptions every figure of a plan rests on; `lossy`: with the lossy alternatives."""
    d = request.deployment
    out = [
        f"demand: {request.images_per_s:.3f} img/s average, sized at the peak "
        f"{request.peak_images_per_s:.3f} img/s (x{request.peak_factor:g}); Poisson arrivals",
        f"latency SLO: {request.slo_label} <= {request.slo_s:g} s end to end (queueing, batching "
        f"window {request.window_s:g} s, batch service) at peak",
        f"queueing: {request.simulation.describe()}; one dispatcher, oldest request first, "
        "batches of one resolution, started when full or when the oldest request has waited "
        "the window; fleet size by exponential then binary search over N",
        f"service time per batch: {BASIS_WORDS[request.latency_basis]}, {request.steps} steps, "
        f"{'CFG' if request.cfg else 'no CFG'}, {request.caption_tokens} caption tokens; batch "
        "sizes between the searched ones interpolated linearly",
        "endpoint overhead (routing, PNG encoding, HTTP) per resolution added to every "
        "request's latency, off the GPU: measured by `advisor loadtest --url` against "
        "`advisor serve` (data/loadtests/; each option's service block names its basis), "
        f"else assumed {DEFAULT_OVERHEAD_S:g} s",
        f"memory: the models' fit verdict at every resolution of the mix: torch peak allocated "
        f"plus a margin of at least {request.memory_margin_gb:g} GB within the GPU's memory",
        "the fleet runs all month at peak size (no autoscaling); "
        f"{HOURS_PER_MONTH:g} hours a month",
        f"power: GPU watts (measured when the data has it, else catalog TDP) x GPUs + "
        f"{d.server_w:g} W per server of {d.gpus_per_server} GPUs, x PUE {d.pue:g}",
    ]
    if d.mode == "cloud":
        out.append("cloud: price per GPU-hour from the request, else the catalog; no capex")
    else:
        out.append(f"owned: GPU price (request, else catalog; a catalog price range at its high "
                   f"end) + ${d.server_usd:,.0f} per server,"
                   f" amortized over {d.amortization_years:g} years; electricity "
                   f"${d.usd_per_kwh:g}/kWh at full power all month")
    if request.n_plus_one:
        out.append("N+1: one spare GPU beyond the fleet that meets the SLO")
    out.append("ranking: the cheapest option of each GPU, by monthly cost, except on a near-tie:"
               f" among options within {NEAR_TIE:.0%} of the cheapest one left, the one whose "
               "least sure figure rests on firmer evidence (measured, then fitted, then "
               "transferred) ranks first; each option shows its utilization at peak and its "
               "headroom below the SLO")
    out.append("search: a candidate is simulated only while its cost lower bound (GPUs needed at "
               "full batches) could enter the top list or the cost/latency frontier, which covers"
               f" options up to {PARETO_COST_WINDOW:g}x the cheapest monthly cost")
    if lossy:
        out.append("lossy alternatives: each quantized precision the request does not list is "
                   "searched alone (the first option's attention backend, the request's compile "
                   "settings, no offload) on the GPUs of the options shown and those where "
                   "nothing requested fits without offload, and sized only where it could cost "
                   "less than the first option; quality: " + QUALITY_CAVEAT)
    return out + list(SPEC_RULES)
