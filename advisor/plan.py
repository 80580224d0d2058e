"""Candidate search, fleet sizing and cost: a Request in, a ranked Plan out.

For each candidate GPU: every setting (precision, compile, attention, offload) and max batch
whose predicted peak memory fits with the margin; the service time of each batch size at each
resolution of the mix (from the fitted models); the smallest fleet meeting the latency SLO at
peak demand (queueing simulation, advisor.queueing); and what that fleet costs.

The search is exact for what it reports but does not simulate what cannot matter (branch and
bound): candidates are taken in order of a cost lower bound (the fleet needed at full batches,
before any queueing); one is simulated only while it could still enter the top list or the
cost/latency Pareto frontier. Rules that skip settings without predicting them, each stated in
the plan's assumptions (SPEC_RULES), rest on the catalog's specs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from advisor.errors import AdvisorError
from advisor.queueing import Service, Sizing, gpus_estimate, gpus_lower_bound, \
    latency_floor_s, simulate_cached, size_fleet
from advisor.request import Request

HOURS_PER_MONTH = 730.0  # 8,760 h / 12
# The cost / latency Pareto frontier covers options up to this multiple of the cheapest cost:
# beyond it every candidate would need simulating, for trade-offs few buyers consider.
PARETO_COST_WINDOW = 1.5
SIXTEEN_BIT = ("bf16", "fp16")
SPEC_RULES = (
    "fp16 is searched only where the GPU has no bf16 path: the catalog gives both the same dense "
    "rate and they store the same weight bytes",
    "fp32 and fp32-tf32 are searched only when no 16-bit precision is: they store twice the "
    "weight bytes and the catalog's dense rate is at most half the 16-bit one",
    "offload settings are searched only on GPUs where no setting fits without offload: "
    "offload only adds host transfers",
)


@dataclass(frozen=True)
class Setting:
    precision: str
    compile: bool
    attention: str
    offload: str

    @property
    def label(self) -> str:
        parts = [self.precision, self.attention] + (["compile"] if self.compile else [])
        return " ".join(parts + ([f"offload={self.offload}"] if self.offload != "none" else []))

    def as_dict(self) -> dict:
        return {"precision": self.precision, "compile": self.compile,
                "attention": self.attention, "offload": self.offload}


@dataclass(frozen=True)
class Price:
    usd: float  # per GPU-hour (cloud) or per GPU (owned)
    unit: str  # "usd_per_gpu_hour" | "gpu_price_usd"
    source: str


@dataclass
class Candidate:
    """One GPU, setting and max batch: its service times and the bounds used to prune."""

    gpu: object  # advisor.catalog.GPU
    setting: Setting
    max_batch: int
    service: Service
    predictions: dict  # resolution label -> {batch: prediction}
    price: Price
    gpu_w: float | None
    gpu_w_source: str
    n_lower: int = 0  # serving GPUs at full batches, before queueing
    cost_lower: float = 0.0  # monthly USD at n_lower (plus the N+1 spare)
    latency_floor_s: float = 0.0
    sizing: Sizing | None = None
    rejected: str = ""  # why it cannot serve the request (set without simulating when possible)
    larger_misfit: str = ""  # why the next searched batch size does not fit, if it does not


@dataclass
class Plan:
    request: Request
    options: list[dict]  # SLO met: the cheapest option of each GPU, ranked by monthly cost
    frontier: list[dict]  # options no other beats on both cost and latency (any GPU, batch)
    infeasible: list[dict]  # GPUs with fitting settings but no fleet meeting the request
    unfit: list[dict]  # GPUs where nothing fits in memory (or only offload, too slow)
    excluded: list[dict]  # GPUs not searched: no price, not runnable, no power figure
    not_simulated: list[dict]  # GPUs whose cost lower bound cannot beat the listed options
    assumptions: list[str]
    search: dict  # counts: predictions, candidates, simulations

    def best(self) -> dict | None:
        return self.options[0] if self.options else None


# --------------------------------------------------------------------------- entry point


def recommend(request: Request, models, catalog, top: int = 5) -> Plan:
    """Ranked options meeting the request; see the module docstring for the search."""
    if top < 1:
        raise AdvisorError(f"--top: expected an integer >= 1, got {top}")
    gpus, excluded = candidate_gpus(request, catalog)
    predictor = _Predictor(models, request)
    found, notes = _search_gpus(gpus, request, predictor)
    candidates, unfit_notes = [], {}
    for gpu in gpus:
        if notes[gpu.id].get("power"):
            excluded.append({"gpu": gpu.id, "reason": notes[gpu.id]["power"]})
            continue
        candidates += found.get(gpu.id, [])
        unfit_notes[gpu.id] = notes[gpu.id]
    evaluated = _branch_and_bound(candidates, request, top)
    met = sorted((_option(c, request) for c in evaluated if c.sizing and c.sizing.n_gpus),
                 key=lambda o: (o["cost"]["usd_per_month"], o["latency"][_q(request)]))
    options = [o for i, o in enumerate(met) if all(p["gpu"] != o["gpu"] for p in met[:i])]
    for rank, option in enumerate(options, 1):
        option["rank"] = rank
        if rank <= top:
            option["reason"] = _reason(option, candidates, request)
    shown = {o["gpu"] for o in options}
    infeasible, unfit = _gpu_verdicts(candidates, unfit_notes, shown, request)
    listed = shown | {g["gpu"] for g in infeasible + unfit}
    not_simulated = _not_simulated(candidates, listed, request)
    return Plan(
        request=request, options=options, frontier=pareto_front(met, _q(request)),
        infeasible=infeasible, unfit=unfit, excluded=excluded, not_simulated=not_simulated,
        assumptions=assumptions(request),
        search={"gpus": len(gpus), "predictions": predictor.count,
                "candidates": len(candidates),
                "candidates_simulated": sum(c.sizing is not None and bool(c.sizing.trials)
                                            for c in evaluated),
                "simulations": sum(len(c.sizing.trials) + (c.sizing.unbounded is not None)
                                   for c in evaluated if c.sizing)},
    )


def evaluate(request: Request, models, catalog, gpu_id: str, setting: Setting, max_batch: int,
             n_serving: int) -> dict:
    """One given option (GPU, setting, max batch, serving GPUs) under current data: whether it
    fits, its simulated latency at peak and its cost. Used to re-check a saved plan."""
    gpu = catalog.get(gpu_id)
    price = _price(gpu, request)
    if isinstance(price, str):
        return {"holds": False, "problems": [price]}
    predictor = _Predictor(models, request)
    batches = [b for b in request.batches if b <= max_batch]
    preds = predictor.predict([(gpu, setting, b) for b in batches])
    problems = [f"{gpu.id} {setting.label}: {why}" for why in
                (_misfit(preds[(gpu.id, setting, max_batch, r.label)], request, r.label)
                 for r in request.resolutions) if why]
    service = _service(gpu, setting, max_batch, batches, preds, request)
    result = simulate_cached(service, request.peak_images_per_s, n_serving, request.window_s,
                             request.simulation)
    latency = result.quantile_s(request.slo_quantile)
    if latency > request.slo_s:
        problems.append(f"{request.slo_label} {latency:.2f} s with {n_serving} GPUs, above the "
                        f"{request.slo_s:g} s SLO")
    power_w, _ = _gpu_power(gpu, preds.values())
    cost = fleet_cost(request, price, power_w, n_serving + request.n_plus_one)
    problems += _budget_problems(cost, request)
    return {"holds": not problems, "problems": problems, "latency": _latency(result),
            "cost": cost}


# --------------------------------------------------------------------------- candidates


def candidate_gpus(request: Request, catalog) -> tuple[list, list[dict]]:
    """The GPUs to search, and the excluded ones with the reason. Unknown ids are errors."""
    for key in ("usd_per_gpu_hour", "gpu_price_usd"):
        for gpu_id in getattr(request.deployment, key):
            _known(catalog, gpu_id, f"deployment: {key}")
    if request.gpus:
        gpus = [_known(catalog, gpu_id, "candidates.gpus") for gpu_id in request.gpus]
    else:
        gpus = list(catalog.gpus)
    excluded, keep = [], []
    for gpu in gpus:
        price = _price(gpu, request)
        if request.segments and gpu.segment not in request.segments:
            continue
        if not request.gpus and not gpu.runnable:
            excluded.append({"gpu": gpu.id, "reason": "catalog says runnable: false (the probe "
                             "cannot drive it); list it in candidates.gpus to include it"})
        elif isinstance(price, str):
            excluded.append({"gpu": gpu.id, "reason": price})
        else:
            keep.append(gpu)
    return keep, excluded


def _known(catalog, gpu_id: str, field_name: str):
    try:
        return catalog.get(gpu_id)
    except AdvisorError as exc:
        raise AdvisorError(f"{field_name}: {exc}") from None


def _price(gpu, request: Request) -> Price | str:
    """The price the cost uses, with its source, or why there is none."""
    d = request.deployment
    if d.mode == "cloud":
        if gpu.id in d.usd_per_gpu_hour:
            return Price(d.usd_per_gpu_hour[gpu.id], "usd_per_gpu_hour",
                         f"request deployment.cloud.usd_per_gpu_hour.{gpu.id}")
        if gpu.cloud_usd_per_hour:
            return Price(gpu.cloud_usd_per_hour, "usd_per_gpu_hour",
                         f"catalog {gpu.id} cloud_usd_per_hour ({gpu.cloud_price_date})")
        return (f"no cloud price: the catalog has none; set "
                f"deployment.cloud.usd_per_gpu_hour.{gpu.id}")
    if gpu.id in d.gpu_price_usd:
        return Price(d.gpu_price_usd[gpu.id], "gpu_price_usd",
                     f"request deployment.owned.gpu_price_usd.{gpu.id}")
    if gpu.price_usd:
        return Price(gpu.price_usd, "gpu_price_usd",
                     f"catalog {gpu.id} price_usd ({gpu.price_date})")
    return f"no purchase price: the catalog has none; set deployment.owned.gpu_price_usd.{gpu.id}"


def _precisions(gpu, request: Request) -> list[str]:
    """The request's precisions this GPU has a dense path for, after the SPEC_RULES."""
    have = [p for p in request.precisions if gpu.dense_tflops(p)]
    sixteen = [p for p in have if p in SIXTEEN_BIT]
    if "bf16" in sixteen and "fp16" in sixteen \
            and gpu.dense_tflops("fp16") == gpu.dense_tflops("bf16"):
        sixteen.remove("fp16")
    return sixteen or have


class _Predictor:
    """Batched, cached calls to the fitted models (predict_many when they offer it)."""

    def __init__(self, models, request: Request):
        self.models, self.request = models, request
        self.cache: dict[tuple, dict] = {}
        self.count = 0

    def predict(self, queries: list[tuple]) -> dict:
        """{(gpu_id, setting, batch, resolution label): prediction} for (gpu, setting, batch)
        queries, at every resolution of the mix."""
        r = self.request
        keys, configs = {}, []  # dict: an ordered set
        for gpu, setting, batch in queries:
            for res in r.resolutions:
                key = (gpu.id, setting, batch, res.label)
                if key not in self.cache and key not in keys:
                    keys[key] = None
                    configs.append(dict(
                        gpu_id=gpu.id, height=res.height, width=res.width, batch=batch,
                        steps=r.steps, cfg=r.cfg, caption_tokens=r.caption_tokens,
                        **setting.as_dict()))
        if configs:
            many = getattr(self.models, "predict_many", None)
            preds = many(configs) if many else [self.models.predict(**c) for c in configs]
            self.cache.update(zip(keys, preds))
            self.count += len(configs)
        return {(g.id, s, b, res.label): self.cache[(g.id, s, b, res.label)]
                for g, s, b in queries for res in r.resolutions}


def _search_gpus(gpus, request: Request, predictor: _Predictor) -> tuple[dict, dict]:
    """Candidates per GPU id, and per GPU id the notes for the not-fitting verdict (smallest
    memory need, offload figures, no precision, no power figure). Offload settings are
    searched only on GPUs where no setting fits without offload."""
    notes: dict[str, dict] = {g.id: {} for g in gpus}
    precisions = {g.id: _precisions(g, request) for g in gpus}
    for g in gpus:
        if not precisions[g.id]:
            notes[g.id]["no_precision"] = (f"no dense {'/'.join(request.precisions)} path in "
                                           "the catalog entry")
    searchable = [g for g in gpus if precisions[g.id]]

    def settings(gpu, offloads):
        return [Setting(p, c, a, o) for p in precisions[gpu.id] for c in request.compile
                for a in request.attention for o in offloads]

    plain = [o for o in request.offload if o == "none"]
    offloaded = [o for o in request.offload if o != "none"]
    found = _fitting([(g, settings(g, plain)) for g in searchable], request, predictor, notes) \
        if plain else {g.id: [] for g in searchable}
    retry = [g for g in searchable if not found[g.id]]
    if offloaded and retry:
        found.update(_fitting([(g, settings(g, offloaded)) for g in retry], request, predictor,
                              notes))
        for g in retry:
            notes[g.id]["offload_only"] = bool(found[g.id])
    for g in (g for g in searchable if found[g.id]):
        power_w, power_source = _gpu_power(g, [p for c in found[g.id] for per in
                                               c.predictions.values() for p in per.values()])
        if power_w is None and request.deployment.mode == "owned":
            notes[g.id]["power"] = (f"no power figure for the electricity cost: catalog tdp_w "
                                    f"is null and no measured power for {g.id}")
        for c in found[g.id]:
            c.gpu_w, c.gpu_w_source = power_w, power_source
        found[g.id] = _undominated(found[g.id])
    return found, notes


def _fitting(jobs: list[tuple], request: Request, predictor: _Predictor,
             notes: dict) -> dict[str, list[Candidate]]:
    """Candidates for (gpu, settings) jobs: (setting, max batch) where every searched batch up
    to the max fits in memory at every resolution (the dispatcher forms every size up to it).

    Batch sizes are predicted in rounds, all GPUs at once, smallest first. A setting leaves the
    search at its first batch that does not fit (peak memory grows with the batch) and after
    batch 1 when batch-of-one service alone misses the SLO (a larger batch is never faster,
    so every max batch of it is rejected the same way)."""
    live = [(gpu, s) for gpu, settings in jobs for s in settings]
    fitting: dict[tuple, list[int]] = {(g.id, s): [] for g, s in live}
    larger_misfit: dict[tuple, str] = {}
    preds: dict = {}
    for i, b in enumerate(request.batches):
        if not live:
            break
        preds.update(predictor.predict([(g, s, b) for g, s in live]))
        still = []
        for g, s in live:
            if i == 0:
                _note_smallest_need(notes[g.id], s, preds, g, request)
            why = next((why for why in (_misfit(preds[(g.id, s, b, r.label)], request, r.label)
                                        for r in request.resolutions) if why), "")
            if why:
                larger_misfit[(g.id, s)] = why
                continue
            fitting[(g.id, s)].append(b)
            if i > 0 or latency_floor_s(_service(g, s, 1, [1], preds, request),
                                        request.slo_quantile) <= request.slo_s:
                still.append((g, s))
        live = still
    out: dict[str, list[Candidate]] = {g.id: [] for g, _ in jobs}
    for gpu, settings in jobs:
        price = _price(gpu, request)
        for s in settings:
            batches = fitting[(gpu.id, s)]
            for j, b in enumerate(batches):
                out[gpu.id].append(Candidate(
                    gpu=gpu, setting=s, max_batch=b,
                    service=_service(gpu, s, b, batches[:j + 1], preds, request),
                    predictions={r.label: {x: preds[(gpu.id, s, x, r.label)] for x in (1, b)}
                                 for r in request.resolutions},
                    price=price, gpu_w=None, gpu_w_source="",
                    larger_misfit="" if j + 1 < len(batches)
                    else larger_misfit.get((gpu.id, s), "")))
    return out


def _note_smallest_need(note: dict, s: Setting, preds: dict, gpu, request: Request) -> None:
    """Keep the setting needing the least memory at batch 1 (largest resolution), per offload
    mode, for the "needs X GB, has Y GB" verdict."""
    worst = max((preds[(gpu.id, s, 1, r.label)] for r in request.resolutions),
                key=lambda p: p["peak_memory_gb"])
    key = "none" if s.offload == "none" else "offload"
    if key not in note or worst["peak_memory_gb"] < note[key][1]["peak_memory_gb"]:
        note[key] = (s, worst)


def _misfit(pred: dict, request: Request, label: str) -> str:
    """Why a prediction does not fit in memory, or "" when it fits."""
    capacity = pred.get("memory_capacity_gb")
    peak = pred["peak_memory_gb"]
    if not pred.get("fits", True):
        return pred.get("fits_reason") or f"predicted peak {peak:.1f} GB does not fit"
    if capacity is not None and peak + request.memory_margin_gb > capacity:
        return (f"{label}: predicted peak {peak:.1f} GB leaves less than the "
                f"{request.memory_margin_gb:g} GB margin of {capacity:.1f} GB")
    return ""


def _service(gpu, setting: Setting, max_batch: int, batches: list[int], preds: dict,
             request: Request) -> Service:
    """Service time of every batch size 1..max_batch per resolution: predicted at the searched
    batch sizes, linear in between."""
    def seconds(p: dict) -> float:
        return p["latency_interval_s"][1] if request.latency_basis == "upper" \
            else p["latency_s"]["total"]

    times = []
    for r in request.resolutions:
        at = {b: seconds(preds[(gpu.id, setting, b, r.label)]) for b in batches}
        times.append(tuple(_interpolate(at, k) for k in range(1, max_batch + 1)))
    return Service(times_s=tuple(times), shares=tuple(r.share for r in request.resolutions))


def _interpolate(at: dict[int, float], k: int) -> float:
    if k in at:
        return at[k]
    lo = max(b for b in at if b < k)
    hi = min(b for b in at if b > k)
    return at[lo] + (at[hi] - at[lo]) * (k - lo) / (hi - lo)


def _undominated(candidates: list[Candidate]) -> list[Candidate]:
    """Per max batch, drop settings no faster anywhere than another one: on the same GPU (same
    price and power) a slower batch at every size and resolution can only cost more."""
    def dominates(i: int, j: int) -> bool:  # exact ties: the earlier one survives
        pairs = [(x, y) for ta, tb in zip(candidates[i].service.times_s,
                                          candidates[j].service.times_s) for x, y in zip(ta, tb)]
        return all(x <= y for x, y in pairs) and (i < j or any(x < y for x, y in pairs))

    return [c for j, c in enumerate(candidates) if not any(
        dominates(i, j) for i, o in enumerate(candidates)
        if i != j and o.max_batch == c.max_batch)]


def _gpu_power(gpu, preds) -> tuple[float | None, str]:
    measured = [p.get("power_w") for p in preds]
    if measured and all(w is not None for w in measured):
        return max(measured), "measured power_w of the predicted configs (max)"
    if gpu.tdp_w:
        return float(gpu.tdp_w), f"catalog {gpu.id} tdp_w"
    return None, f"unknown: catalog {gpu.id} tdp_w is null"


# --------------------------------------------------------------------------- sizing and cost


def _branch_and_bound(candidates: list[Candidate], request: Request, top: int) -> list:
    """Size candidates in order of their cost lower bound while they can still matter."""
    q, rate = _q(request), request.peak_images_per_s
    for c in candidates:
        c.latency_floor_s = latency_floor_s(c.service, request.slo_quantile)
        c.n_lower = gpus_lower_bound(c.service, rate, request.slo_quantile, request.slo_s)
        c.cost_lower = math.inf if c.n_lower == math.inf else fleet_cost(
            request, c.price, c.gpu_w, c.n_lower + request.n_plus_one)["usd_per_month"]
    evaluated, met, best = [], [], {}  # met: (cost, latency) of each option; best: per GPU
    # Best first: by a rough cost estimate, so that each GPU's likely option sets the limits
    # early (the order changes the work, not the result); then by the bound.
    estimate = {id(c): fleet_cost(request, c.price, c.gpu_w, math.ceil(
        gpus_estimate(c.service, rate, request.window_s)) + request.n_plus_one)["usd_per_month"]
        for c in candidates if c.n_lower != math.inf}
    for c in sorted(candidates, key=lambda c: (estimate.get(id(c), math.inf), c.max_batch,
                                               c.cost_lower, c.latency_floor_s)):
        if c.n_lower == math.inf:  # the batch-of-one service alone misses the SLO
            c.sizing = size_fleet(c.service, rate, request.slo_quantile, request.slo_s,
                                  request.window_s, request.max_gpus, request.simulation)
            c.rejected = c.sizing.reason
            evaluated.append(c)
            continue
        ranked = sorted(best.values())
        beaten = c.cost_lower >= best.get(c.gpu.id, math.inf) or (
            len(ranked) >= top and c.cost_lower > ranked[top - 1])
        cheapest = min(best.values(), default=math.inf)
        if beaten and (c.cost_lower > PARETO_COST_WINDOW * cheapest or any(
                cost <= c.cost_lower and latency <= c.latency_floor_s for cost, latency in met)):
            continue  # cannot enter the ranking nor the frontier
        # beyond this monthly cost the option could enter neither the ranking nor the frontier
        limit = max(min(best.get(c.gpu.id, math.inf),
                        ranked[top - 1] if len(ranked) >= top else math.inf),
                    PARETO_COST_WINDOW * cheapest)
        c.sizing = size_fleet(c.service, rate, request.slo_quantile, request.slo_s,
                              request.window_s, request.max_gpus - request.n_plus_one,
                              request.simulation, _gpus_within(limit, c, request))
        evaluated.append(c)
        if c.sizing.gave_up_above is not None:
            continue  # costs more than the options found: listed as not simulated
        if c.sizing.n_gpus is None:
            c.rejected = c.sizing.reason
            continue
        cost = fleet_cost(request, c.price, c.gpu_w, c.sizing.n_gpus + request.n_plus_one)
        budget = _budget_problems(cost, request)
        if budget:
            c.rejected = "; ".join(budget)
            c.sizing = replace(c.sizing, n_gpus=None, reason=c.rejected)
            continue
        met.append((cost["usd_per_month"], c.sizing.result.quantile_s(request.slo_quantile)))
        best[c.gpu.id] = min(best.get(c.gpu.id, math.inf), cost["usd_per_month"])
    return evaluated


def _gpus_within(usd_per_month: float, c: Candidate, request: Request) -> int | None:
    """The most serving GPUs of `c` whose fleet costs at most `usd_per_month` (None: no limit).
    The cost grows with the fleet: doubling steps up from the lower bound, then bisection."""
    if usd_per_month == math.inf:
        return None

    def within(n: int) -> bool:
        cost = fleet_cost(request, c.price, c.gpu_w, n + request.n_plus_one)
        return cost["usd_per_month"] <= usd_per_month

    n, step = c.n_lower - 1, 1
    while within(n + step):
        n, step = n + step, step * 2
    while step > 1:  # n is within, n + step is not
        step //= 2
        if within(n + step):
            n += step
    return n


def _budget_problems(cost: dict, request: Request) -> list[str]:
    out = []
    if request.max_usd_per_month is not None and cost["usd_per_month"] > request.max_usd_per_month:
        out.append(f"${cost['usd_per_month']:,.0f}/month over the "
                   f"${request.max_usd_per_month:,.0f} budget")
    if request.max_capex_usd is not None and cost["capex_usd"] > request.max_capex_usd:
        out.append(f"capex ${cost['capex_usd']:,.0f} over the ${request.max_capex_usd:,.0f} limit")
    return out


def fleet_cost(request: Request, price: Price, gpu_w: float | None, n_gpus: int) -> dict:
    """Monthly cost, capex, power and cost per 1,000 images of `n_gpus` GPUs running all month
    (the fleet is sized for the peak and not scaled down off-peak)."""
    d = request.deployment
    servers = math.ceil(n_gpus / d.gpus_per_server)
    power_kw = None if gpu_w is None else (n_gpus * gpu_w + servers * d.server_w) * d.pue / 1e3
    if d.mode == "cloud":
        capex, usd_per_month = 0.0, n_gpus * price.usd * HOURS_PER_MONTH
    elif power_kw is None:
        raise AdvisorError(f"{price.source}: owned cost needs the GPU's power; the catalog has "
                           "no tdp_w for it and no measured power is known")
    else:
        capex = n_gpus * price.usd + servers * d.server_usd
        usd_per_month = capex / (12 * d.amortization_years) \
            + power_kw * HOURS_PER_MONTH * d.usd_per_kwh
    images_per_month = request.images_per_s * HOURS_PER_MONTH * 3600
    return {"usd_per_month": usd_per_month, "usd_per_1k_images": usd_per_month
            / images_per_month * 1000, "capex_usd": capex, "power_kw": power_kw,
            "servers": servers, "price": {"usd": price.usd, "unit": price.unit,
                                          "source": price.source}}


# --------------------------------------------------------------------------- results


def _q(request: Request) -> str:
    return f"{request.slo_label}_s"


def _latency(result) -> dict:
    return {"p50_s": result.p50_s, "p95_s": result.p95_s, "p99_s": result.p99_s,
            "mean_wait_s": result.mean_wait_s, "mean_batch": result.mean_batch,
            "utilization_at_peak": result.utilization}


def _option(c: Candidate, request: Request) -> dict:
    n = c.sizing.n_gpus
    cost = fleet_cost(request, c.price, c.gpu_w, n + request.n_plus_one)
    per_resolution = {}
    for label, preds in c.predictions.items():
        one, full = preds[1], preds[c.max_batch]
        per_resolution[label] = {
            "batch_1_s": one["latency_s"]["total"],
            "batch_1_interval_s": list(one["latency_interval_s"]),
            "batch_1_source": one["source"],
            f"batch_{c.max_batch}_s": full["latency_s"]["total"],
            f"batch_{c.max_batch}_interval_s": list(full["latency_interval_s"]),
            "peak_memory_gb": full["peak_memory_gb"],
            "memory_interval_gb": list(full["memory_interval_gb"]),
            "source": full["source"],
            "source_detail": full.get("source_detail", ""),
        }
    return {
        "gpu": c.gpu.id,
        "gpu_name": c.gpu.name,
        "setting": c.setting.as_dict(),
        "max_batch": c.max_batch,
        "window_s": request.window_s,
        "fleet": {"serving_gpus": n, "spare_gpus": int(request.n_plus_one),
                  "total_gpus": n + request.n_plus_one, "servers": cost["servers"],
                  "throughput_lower_bound_gpus": c.n_lower,
                  "simulated": [[k, v] for k, v in c.sizing.trials]},
        "latency": _latency(c.sizing.result),
        "capacity_img_per_s": n / c.service.image_s_at_full_batch(),
        "cost": cost,
        "power_source": c.gpu_w_source,
        "service": per_resolution,
        "sources": sorted({p[key] for p in per_resolution.values()
                           for key in ("source", "batch_1_source")}),
        "model_version": next(iter(c.predictions.values()))[1].get("model_version"),
    }


def pareto_front(options: list[dict], key: str) -> list[dict]:
    """The options no other option beats on both monthly cost and latency `key`."""
    front, best = [], math.inf
    for o in options:  # sorted by cost, so each new frontier point must be faster
        if o["latency"][key] < best:
            front.append(o)
            best = o["latency"][key]
    return front


def _reason(option: dict, candidates: list[Candidate], request: Request) -> str:
    """One line: why this max batch (what the next larger one would do), why this many GPUs."""
    q, label = _q(request), request.slo_label
    b, n = option["max_batch"], option["fleet"]["serving_gpus"]
    per_gpu = option["capacity_img_per_s"] / n
    same = {c.max_batch: c for c in candidates
            if c.gpu.id == option["gpu"] and c.setting.as_dict() == option["setting"]}
    why_batch = f"batch {b}: {per_gpu:.2f} img/s per GPU at full batches"
    larger = [k for k in request.batches if k > b]
    if not larger:
        why_batch += "; the largest batch searched"
    elif same[b].larger_misfit:
        why_batch += f"; batch {larger[0]} does not fit ({same[b].larger_misfit})"
    elif larger[0] in same:
        why_batch += f"; batch {larger[0]} " + _batch_outcome(same[larger[0]], n, request)
    n_text = _gpus(n) + (" + 1 spare (N+1)" if request.n_plus_one else "")
    trials = dict(option["fleet"]["simulated"])
    if n == 1:
        why_n = "the smallest fleet"
    elif n - 1 in trials:
        why_n = f"{_gpus(n - 1)} {'give' if n > 2 else 'gives'} {label} {trials[n - 1]:.2f} s"
    else:
        why_n = f"{_gpus(n - 1)} cannot keep up with {request.peak_images_per_s:.2f} img/s"
    return (f"{why_batch}. {n_text}: the fewest with {label} {option['latency'][q]:.2f} s "
            f"<= {request.slo_s:g} s at peak ({why_n}).")


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


def _gpu_verdicts(candidates, notes: dict, shown: set, request: Request):
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
        if note.get("no_precision"):
            unfit.append({"gpu": gpu_id, "reason": note["no_precision"]})
        elif not found or note.get("offload_only"):
            if found and len(rejected) < len(found):
                continue  # offload candidates not simulated: cannot beat the options shown
            unfit.append({"gpu": gpu_id, "reason": _unfit_reason(note, rejected, request)})
        elif rejected and len(rejected) == len(found):
            best = min(rejected, key=lambda c: c.latency_floor_s)
            infeasible.append({"gpu": gpu_id, "reason": f"best {best.setting.label} batch "
                               f"{best.max_batch}: {best.rejected}"})
    return infeasible, unfit


def _unfit_reason(note: dict, rejected: list[Candidate], request: Request) -> str:
    setting, pred = note["none"] if "none" in note else note["offload"]
    capacity = pred.get("memory_capacity_gb")
    have = f", has {capacity:.1f} GB" if capacity is not None else ""
    margin = max(pred.get("memory_margin_gb", 0.0), request.memory_margin_gb)
    text = (f"needs {pred['peak_memory_gb']:.1f} GB + {margin:.1f} GB margin at batch 1 "
            f"({setting.label}){have}")
    if "offload" not in note:
        searched = any(o != "none" for o in request.offload)
        return text + ("" if searched else "; offload not searched (settings.offload)")
    s, p = note["offload"]
    if not rejected:
        return text + f"; does not fit even with offload ({p['peak_memory_gb']:.1f} GB)"
    fastest = min(rejected, key=lambda c: c.latency_floor_s)
    why = (f"too slow for the {request.slo_label} <= {request.slo_s:g} s SLO"
           if fastest.latency_floor_s > request.slo_s else fastest.rejected)
    return (text + f"; fits only with {fastest.setting.offload} offload at "
            f"{fastest.service.times_s[0][0]:.1f} s per {request.resolutions[0].label} image, "
            f"{why}")


def _not_simulated(candidates: list[Candidate], seen: set, request: Request) -> list[dict]:
    best: dict[str, float] = {}
    for c in candidates:
        if c.gpu.id in seen:
            continue
        if c.sizing is None:
            bound = c.cost_lower
        elif c.sizing.gave_up_above is not None:  # no fleet up to that many GPUs met the SLO
            bound = max(c.cost_lower, fleet_cost(request, c.price, c.gpu_w, c.sizing.gave_up_above
                                                 + 1 + request.n_plus_one)["usd_per_month"])
        else:
            continue
        best[c.gpu.id] = min(best.get(c.gpu.id, math.inf), bound)
    return [{"gpu": g, "usd_per_month_at_least": v} for g, v in sorted(best.items(),
                                                                       key=lambda kv: kv[1])]


def assumptions(request: Request) -> list[str]:
    d = request.deployment
    out = [
        f"demand: {request.images_per_s:.3f} img/s average, sized at the peak "
        f"{request.peak_images_per_s:.3f} img/s (x{request.peak_factor:g}); Poisson arrivals",
        f"latency SLO: {request.slo_label} <= {request.slo_s:g} s end to end (queueing, batching "
        f"window {request.window_s:g} s, batch service) at peak",
        f"queueing: {request.simulation.describe()}; one dispatcher, oldest request first, "
        "batches of one resolution, started when full or when the oldest request has waited "
        "the window; fleet size by exponential then binary search over N",
        f"service time per batch: the fitted models' "
        f"{'upper interval bound' if request.latency_basis == 'upper' else 'point prediction'}"
        f", {request.steps} steps, {'CFG' if request.cfg else 'no CFG'}, "
        f"{request.caption_tokens} caption tokens; batch sizes between the searched ones "
        "interpolated linearly",
        f"memory: predicted peak + max(model margin, {request.memory_margin_gb:g} GB) within "
        "the GPU's memory, at every resolution of the mix",
        "the fleet runs all month at peak size (no autoscaling); "
        f"{HOURS_PER_MONTH:g} hours a month",
        f"power: GPU watts (measured when the data has it, else catalog TDP) x GPUs + "
        f"{d.server_w:g} W per server of {d.gpus_per_server} GPUs, x PUE {d.pue:g}",
    ]
    if d.mode == "cloud":
        out.append("cloud: price per GPU-hour from the request, else the catalog; no capex")
    else:
        out.append(f"owned: GPU price (request, else catalog) + ${d.server_usd:,.0f} per server,"
                   f" amortized over {d.amortization_years:g} years; electricity "
                   f"${d.usd_per_kwh:g}/kWh at full power all month")
    if request.n_plus_one:
        out.append("N+1: one spare GPU beyond the fleet that meets the SLO")
    out.append("ranking: the cheapest option of each GPU; a candidate is simulated only while "
               "its cost lower bound (GPUs needed at full batches) could enter the top list or "
               f"the cost/latency frontier, which covers options up to {PARETO_COST_WINDOW:g}x "
               "the cheapest monthly cost")
    return out + list(SPEC_RULES)
