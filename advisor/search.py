"""Candidate search and branch and bound: which (GPU, setting, max batch) can serve the request,
and which of them are worth sizing.

For each GPU: every setting (precision, compile, attention, offload) and max batch whose
predictions fit in memory (`Prediction.fits`, the models' one memory rule, with the request's
margin) at every resolution of the mix, with the service time of each batch size. Rules that
skip settings without predicting them rest on the catalog's specs (SPEC_RULES, stated in the
plan's assumptions).

Branch and bound: candidates are taken in order of a cost lower bound (the fleet needed at full
batches, before any queueing); one is simulated only while it could still enter the top list or
the cost/latency Pareto frontier.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

from advisor.contract import CFG_GUIDANCE_SCALE, COMPUTE_PRECISIONS, QUANT_SCOPES, QUANTIZATIONS, \
    Config, Prediction, Setting, setting_problem, unsupported_reason
from advisor.cost import HOURS_PER_MONTH, NoPrice, Price, budget_problems, fleet_cost, \
    gpu_price, gpus_within
from advisor.errors import AdvisorError
from advisor.options import Verdict
from advisor.overhead import overhead_s
from advisor.queueing import Service, Sizing, gpus_estimate, gpus_lower_bound, \
    latency_floor_s, size_fleet
from advisor.request import Request

# The cost / latency Pareto frontier covers options up to this multiple of the cheapest cost:
# beyond it every candidate would need simulating, for trade-offs few buyers consider.
PARETO_COST_WINDOW = 1.5
SIXTEEN_BIT = ("bf16", "fp16")
THIRTY_TWO_BIT = ("fp32", "fp32-tf32")
SPEC_RULES = (
    "fp16 is searched only where the GPU has no bf16 path: the catalog gives both the same dense "
    "rate and they store the same weight bytes",
    "fp32 and fp32-tf32 are searched only when no 16-bit precision is: they store twice the "
    "weight bytes and the catalog's dense rate is at most half the 16-bit one",
    "offload settings are searched only on GPUs where no setting fits without offload: "
    "offload only adds host transfers",
    f"the quantized precisions ({', '.join(QUANTIZATIONS)}) are searched without offload only "
    "(never measured with it), and only on GPUs of the compute capability each needs (catalog "
    "compute_capability; " + ", ".join(f"{q} from {k.min_capability[0]}.{k.min_capability[1]}"
                                       for q, k in QUANTIZATIONS.items() if k.min_capability)
    + ")",
)


@dataclass
class Candidate:
    """One GPU, setting and max batch: its service times and the bounds used to prune."""

    gpu: object  # advisor.catalog.GPU
    setting: Setting
    max_batch: int
    service: Service
    predictions: dict  # resolution label -> {batch: Prediction}, at batch 1 and max_batch
    price: Price | NoPrice  # NoPrice: sized for the fewest GPUs, its cost waits on a price
    gpu_w: float | None
    gpu_w_source: str
    n_lower: int = 0  # serving GPUs at full batches, before queueing
    cost_lower: float = 0.0  # monthly USD at n_lower (plus the N+1 spare)
    latency_floor_s: float = 0.0
    sizing: Sizing | None = None
    rejected: str = ""  # why it cannot serve the request (set without simulating when possible)
    larger_misfit: str = ""  # why the next searched batch size does not fit, if it does not


@dataclass
class GpuNotes:
    """What the search learned of a GPU for its verdict when it has no option."""

    power: str = ""  # owned mode without a power figure: why (the GPU is then excluded)
    no_precision: str = ""  # none of the request's precisions runs on it: why, per precision
    offload_only: bool = False  # only offload settings fit
    # per offload kind ("none", "offload"): the setting needing the least memory at batch 1
    # and its prediction at its neediest resolution, for "needs X GB, has Y GB"
    smallest: dict[str, tuple[Setting, Prediction]] = field(default_factory=dict)


# --------------------------------------------------------------------------- GPUs


def candidate_gpus(request: Request, catalog) -> tuple[list, list[Verdict]]:
    """The GPUs to search, and the excluded ones with the reason. Unknown ids are errors. A GPU
    without a price is searched too: its fleet is sized and listed with the price it needs."""
    for key in ("usd_per_gpu_hour", "gpu_price_usd"):
        for gpu_id in getattr(request.deployment, key):
            _known(catalog, gpu_id, f"deployment: {key}")
    for gpu_id in request.prices:
        _known(catalog, gpu_id, f"prices.{gpu_id}")
    if request.gpus:
        gpus = [_known(catalog, gpu_id, "candidates.gpus") for gpu_id in request.gpus]
    else:
        gpus = list(catalog.gpus)
    excluded, keep = [], []
    for gpu in gpus:
        if request.segments and gpu.segment not in request.segments:
            continue
        if not request.gpus and not gpu.runnable:
            excluded.append(Verdict(gpu.id, "catalog says runnable: false (the probe cannot "
                                    "drive it); list it in candidates.gpus to include it"))
        else:
            keep.append(gpu)
    return keep, excluded


def _known(catalog, gpu_id: str, field_name: str):
    try:
        return catalog.get(gpu_id)
    except AdvisorError as exc:
        raise AdvisorError(f"{field_name}: {exc}") from None


def not_offered(gpu, precision: str, compile: bool = False,
                attention: str = "native") -> str | None:
    """Why catalog GPU `gpu` cannot run `precision` (compiled or not) with `attention`, or None
    when it can: the contract's rule (fp8 needs compute capability 8.9, flash and cuDNN
    attention 8.0; int8-wo is not offered compiled; a dense rate for what it runs at), the one
    features.refusal applies to the models' queries."""
    return unsupported_reason(precision, gpu.capability, compile, gpu.dense_tflops, attention)


def _precisions(gpu, request: Request) -> list[str]:
    """The request's precisions this GPU can run, after the SPEC_RULES."""
    have = [p for p in request.precisions if not not_offered(gpu, p)]
    if "bf16" in have and "fp16" in have \
            and gpu.dense_tflops("fp16") == gpu.dense_tflops("bf16"):
        have.remove("fp16")
    narrow = any(p in SIXTEEN_BIT for p in have)
    return [p for p in have if not (narrow and p in THIRTY_TWO_BIT)]


def gpu_power(gpu, preds) -> tuple[float | None, str]:
    """The GPU's watts for the electricity cost: measured when every prediction has a figure,
    else the catalog TDP."""
    measured = [p.power.watts for p in preds]
    if measured and all(w is not None for w in measured):
        return max(measured), "measured power_w of the predicted configs (max)"
    if gpu.tdp_w:
        return float(gpu.tdp_w), f"catalog {gpu.id} tdp_w"
    return None, f"unknown: catalog {gpu.id} tdp_w is null"


# --------------------------------------------------------------------------- predictions


class PredictionCache:
    """Batched, cached calls to the fitted models: one predict_many per round of queries."""

    def __init__(self, models, request: Request):
        self.models, self.request = models, request
        self.cache: dict[tuple, Prediction] = {}
        self.count = 0

    def predict(self, queries: list[tuple]) -> dict:
        """{(gpu_id, setting, batch, resolution label): prediction} for (gpu, setting, batch)
        queries, at every resolution of the mix."""
        r = self.request
        todo = {}  # key -> (gpu_id, Config), in order
        for gpu, setting, batch in queries:
            for res in r.resolutions:
                key = (gpu.id, setting, batch, res.label)
                if key not in self.cache and key not in todo:
                    # vars(): the setting's fields without asdict's deep copy (a hot loop)
                    todo[key] = (gpu.id, Config(
                        height=res.height, width=res.width, batch=batch, steps=r.steps,
                        guidance_scale=CFG_GUIDANCE_SCALE if r.cfg else 0.0,
                        caption_tokens=r.caption_tokens, **vars(setting)))
        if todo:
            preds = self.models.predict_many(list(todo.values()),
                                             memory_margin_gb=r.memory_margin_gb)
            self.cache.update(zip(todo, preds))
            self.count += len(todo)
        return {(g.id, s, b, res.label): self.cache[(g.id, s, b, res.label)]
                for g, s, b in queries for res in r.resolutions}


def misfits(preds: dict, gpu_id: str, setting: Setting, batch: int,
            request: Request) -> list[str]:
    """Why a batch size of a setting does not fit in memory, per resolution of the mix where it
    does not (the models' verdict); empty when it fits everywhere."""
    return [f"{r.label}: {p.fits_reason}" for r in request.resolutions
            if not (p := preds[(gpu_id, setting, batch, r.label)]).fits]


def service(gpu, setting: Setting, max_batch: int, batches: list[int], preds: dict,
            request: Request) -> Service:
    """Service time of every batch size 1..max_batch per resolution: predicted at the searched
    batch sizes, linear in between."""
    def seconds(p: Prediction) -> float:
        return p.latency.interval_s[1] if request.sized_on_upper(p.source) \
            else p.latency.total_s

    times = []
    for r in request.resolutions:
        at = {b: seconds(preds[(gpu.id, setting, b, r.label)]) for b in batches}
        times.append(tuple(interpolate(at, k) for k in range(1, max_batch + 1)))
    return Service(times_s=tuple(times), shares=tuple(r.share for r in request.resolutions),
                   overhead_s=tuple(overhead_s(gpu.id, r.height, r.width)[0]
                                    for r in request.resolutions))


def interpolate(at: dict[int, float], k: int) -> float:
    """The value at `k`, linear between the nearest keys of `at` around it."""
    if k in at:
        return at[k]
    lo = max(b for b in at if b < k)
    hi = min(b for b in at if b > k)
    return at[lo] + (at[hi] - at[lo]) * (k - lo) / (hi - lo)


# --------------------------------------------------------------------------- candidates


def variants(base: Setting, request: Request) -> list[Setting]:
    """`base` with each quantization scope (a quantized precision), compile mode (where
    something is compiled) and VAE compile and memory format the request allows, where they can
    run (contract.setting_problem). Where the request allows both values of both VAE settings,
    they are searched as one pair (compiled in channels-last, or neither: what the probe
    measured together) and with a compiled transformer only (an eager deployment keeps the
    plain VAE): each is a few hundredths of a second at most, and every variant multiplies the
    search."""
    scopes = request.quant_scope if base.precision in QUANTIZATIONS else QUANT_SCOPES[:1]
    both = {False, True}
    paired = both <= set(request.vae_compile) and both <= set(request.vae_channels_last)
    out = []
    for v, cl, q in itertools.product(request.vae_compile, request.vae_channels_last, scopes):
        if paired and (v != cl or (v and not base.compile)):
            continue
        modes = request.compile_mode if base.compile or v else ("default",)
        out += [replace(base, quant_scope=q, compile_mode=m, vae_compile=v,
                        vae_channels_last=cl) for m in modes]
    return [s for s in out if not setting_problem(s)]


def search_gpus(gpus, request: Request,
                predictor: PredictionCache) -> tuple[dict, dict[str, GpuNotes]]:
    """Candidates per GPU id, and per GPU id the notes for the not-fitting verdict. Offload
    settings are searched only on GPUs where no setting fits without offload."""
    notes = {g.id: GpuNotes() for g in gpus}
    precisions = {g.id: _precisions(g, request) for g in gpus}
    for g in gpus:
        if not precisions[g.id]:
            others = [p for p in COMPUTE_PRECISIONS
                      if p not in request.precisions and not not_offered(g, p)]
            notes[g.id].no_precision = "; ".join(
                f"{p}: {not_offered(g, p)}" for p in request.precisions) + (
                f" (it has {', '.join(others)}: add to settings.precisions)" if others else "")
    searchable = [g for g in gpus if precisions[g.id]]

    def settings(gpu, offloads):
        return [s for p in precisions[gpu.id] for c in request.compile
                for a in request.attention for o in offloads
                if (o == "none" or p not in QUANTIZATIONS) and not not_offered(gpu, p, c, a)
                for s in variants(Setting(precision=p, attention=a, compile=c, offload=o),
                                  request)]

    plain = [o for o in request.offload if o == "none"]
    offloaded = [o for o in request.offload if o != "none"]
    found = _fitting([(g, settings(g, plain)) for g in searchable], request, predictor, notes) \
        if plain else {g.id: [] for g in searchable}
    retry = [g for g in searchable if not found[g.id]]
    if offloaded and retry:
        found.update(_fitting([(g, settings(g, offloaded)) for g in retry], request, predictor,
                              notes))
        for g in retry:
            notes[g.id].offload_only = bool(found[g.id])
    for g in (g for g in searchable if found[g.id]):
        power_w, power_source = gpu_power(g, [p for c in found[g.id] for per in
                                              c.predictions.values() for p in per.values()])
        if power_w is None and request.deployment.mode == "owned":
            notes[g.id].power = (f"no power figure for the electricity cost: catalog tdp_w "
                                    f"is null and no measured power for {g.id}")
        for c in found[g.id]:
            c.gpu_w, c.gpu_w_source = power_w, power_source
        found[g.id] = _undominated(found[g.id])
    return found, notes


def _fitting(jobs: list[tuple], request: Request, predictor: PredictionCache,
             notes: dict[str, GpuNotes]) -> dict[str, list[Candidate]]:
    """Candidates for (gpu, settings) jobs: (setting, max batch) where every searched batch up
    to the max fits in memory at every resolution (the dispatcher forms every size up to it).

    Batch sizes are predicted in rounds, all GPUs at once, smallest first. A setting leaves the
    search at its first batch that does not fit (memory grows with the batch) and after batch 1
    when batch-of-one service alone misses the SLO (a larger batch is never faster, so every max
    batch of it is rejected the same way)."""
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
            why = misfits(preds, g.id, s, b, request)
            if why:
                larger_misfit[(g.id, s)] = why[0]
                continue
            fitting[(g.id, s)].append(b)
            if i > 0 or latency_floor_s(service(g, s, 1, [1], preds, request),
                                        request.slo_quantile) <= request.slo_s:
                still.append((g, s))
        live = still
    out: dict[str, list[Candidate]] = {g.id: [] for g, _ in jobs}
    for gpu, settings in jobs:
        price = gpu_price(gpu, request)
        for s in settings:
            batches = fitting[(gpu.id, s)]
            for j, b in enumerate(batches):
                out[gpu.id].append(Candidate(
                    gpu=gpu, setting=s, max_batch=b,
                    service=service(gpu, s, b, batches[:j + 1], preds, request),
                    predictions={r.label: {x: preds[(gpu.id, s, x, r.label)] for x in (1, b)}
                                 for r in request.resolutions},
                    price=price, gpu_w=None, gpu_w_source="",
                    larger_misfit="" if j + 1 < len(batches)
                    else larger_misfit.get((gpu.id, s), "")))
    return out


def _note_smallest_need(note: GpuNotes, s: Setting, preds: dict, gpu,
                        request: Request) -> None:
    """Keep the setting needing the least memory at batch 1 (at its neediest resolution), per
    offload mode, for the "needs X GB, has Y GB" verdict."""
    worst = max((preds[(gpu.id, s, 1, r.label)] for r in request.resolutions),
                key=lambda p: p.memory.needed_gb)
    key = "none" if s.offload == "none" else "offload"
    smallest = note.smallest
    if key not in smallest or worst.memory.needed_gb < smallest[key][1].memory.needed_gb:
        smallest[key] = (s, worst)


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


# --------------------------------------------------------------------------- branch and bound


def branch_and_bound(candidates: list[Candidate], request: Request, top: int,
                     ceiling_usd: float = math.inf, frontier: bool = True,
                     probe: bool = False) -> list:
    """Size candidates in order of their cost lower bound while they can still matter; the
    candidates sized (or rejected on the way), each with its `sizing`. Options costing
    `ceiling_usd` a month or more never matter; `frontier` False: only the ranking does (not
    the Pareto frontier). `probe`: a candidate of a GPU that already has an option is first
    simulated at the largest fleet that could still matter (queueing.size_fleet `probe_cap`),
    for a caller that shows no reason line built from the other candidates."""
    rate = request.peak_images_per_s
    for c in candidates:
        c.latency_floor_s = latency_floor_s(c.service, request.slo_quantile)
        c.n_lower = gpus_lower_bound(c.service, rate, request.slo_quantile, request.slo_s)
        c.cost_lower = math.inf if c.n_lower == math.inf else fleet_cost(
            request, c.price, c.gpu_w, c.n_lower + request.n_plus_one).usd_per_month
    evaluated, met, best = [], [], {}  # met: (cost, latency) of each option; best: per GPU
    # Best first: by a rough cost estimate, so that each GPU's likely option sets the limits
    # early (the order changes the work, not the result); then by the bound.
    estimate = {id(c): fleet_cost(request, c.price, c.gpu_w, math.ceil(
        gpus_estimate(c.service, rate, request.window_s)) + request.n_plus_one).usd_per_month
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
        window = PARETO_COST_WINDOW * min(best.values(), default=math.inf) if frontier else 0.0
        if c.cost_lower >= ceiling_usd or beaten and (c.cost_lower > window or any(
                cost <= c.cost_lower and latency <= c.latency_floor_s for cost, latency in met)):
            continue  # cannot enter the ranking nor the frontier
        # beyond this monthly cost the option could enter neither the ranking nor the frontier
        limit = min(ceiling_usd, max(min(best.get(c.gpu.id, math.inf),
                                         ranked[top - 1] if len(ranked) >= top else math.inf),
                                     window))
        c.sizing = size_fleet(c.service, rate, request.slo_quantile, request.slo_s,
                              request.window_s, request.max_gpus - request.n_plus_one,
                              request.simulation,
                              gpus_within(limit, request, c.price, c.gpu_w, c.n_lower),
                              probe_cap=probe and c.gpu.id in best)
        evaluated.append(c)
        if c.sizing.gave_up_above is not None:
            continue  # costs more than the options found: listed as not simulated
        if c.sizing.n_gpus is None:
            c.rejected = c.sizing.reason
            continue
        cost = fleet_cost(request, c.price, c.gpu_w, c.sizing.n_gpus + request.n_plus_one)
        budget = budget_problems(cost, request)
        if budget:
            c.rejected = "; ".join(budget)
            c.sizing = replace(c.sizing, n_gpus=None, reason=c.rejected)
            continue
        met.append((cost.usd_per_month, c.sizing.result.quantile_s(request.slo_quantile)))
        best[c.gpu.id] = min(best.get(c.gpu.id, math.inf), cost.usd_per_month)
    return evaluated


# One dollar a GPU-month: the "price" that sizes GPUs without one for the fewest GPUs.
PER_GPU = Price(1 / HOURS_PER_MONTH, "usd_per_gpu_hour", "one unit a GPU-month (no price)")


def size_unpriced(candidates: list[Candidate], request: Request) -> list[Candidate]:
    """Candidates of GPUs without a price (NoPrice), sized as the others are but ranked by GPU
    count: each GPU's fleet with the fewest GPUs that meets the SLO (budgets cannot be checked
    without a price). Their `price` stays the NoPrice."""
    if not candidates:
        return []
    counting = request.with_changes(deployment=replace(request.deployment, mode="cloud"),
                                    max_usd_per_month=None, max_capex_usd=None)
    prices = [c.price for c in candidates]
    for c in candidates:
        c.price = PER_GPU
    try:
        return branch_and_bound(candidates, counting, len({c.gpu.id for c in candidates}),
                                frontier=False, probe=True)
    finally:
        for c, price in zip(candidates, prices):
            c.price = price
