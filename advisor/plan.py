"""The planner's entry points: a Request in, a ranked Plan out (`recommend`); one saved option
re-checked under current data (`evaluate`).

For each candidate GPU: every setting and max batch that fits in memory, with its service times
(advisor.search); the smallest fleet meeting the latency SLO at peak demand, by queueing
simulation (advisor.queueing), sized only while it could still matter (branch and bound); its
cost (advisor.cost); and the reasons and assumptions in words (advisor.explain). Each lossy
(quantized) precision the request leaves out is evaluated as an alternative: what allowing it
would change (`Plan.lossy_alternatives`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from advisor.contract import QUALITY_CAVEAT, QUANTIZATIONS, SOURCES, Setting
from advisor.cost import FleetCost, NoPrice, budget_problems, fleet_cost, gpu_price
from advisor.coverage import Probed, accuracy, caveats
from advisor.errors import AdvisorError
from advisor.explain import NEAR_TIE, assumptions, gpu_verdicts, lossy_summary, not_simulated, \
    reason
from advisor.options import Bases, Basis, Change, Fleet, LossyAlternative, LossyFit, Option, \
    PeakLatency, ResolutionService, ShortTest, Verdict
from advisor.overhead import overhead_s
from advisor.probing import probe_suggestion
from advisor.queueing import latency_floor_s, run_quantile_range, simulate_cached, size_fleet
from advisor.request import Request
from advisor.search import Candidate, PredictionCache, branch_and_bound, candidate_gpus, \
    gpu_power, misfits, not_offered, search_gpus, service, size_unpriced


@dataclass(frozen=True)
class Plan:
    request: Request
    options: list[Option]  # SLO met: the cheapest option of each GPU, ranked by monthly cost
    #                        (near-ties by evidence: rank_by_evidence)
    frontier: list[Option]  # options no other beats on both cost and latency (any GPU, batch)
    infeasible: list[Verdict]  # GPUs with fitting settings but no fleet meeting the request
    unfit: list[Verdict]  # GPUs where nothing fits in memory (or only offload, too slow)
    excluded: list[Verdict]  # GPUs not searched: not runnable, no power figure
    not_simulated: list[Verdict]  # GPUs whose cost lower bound cannot beat the listed options
    assumptions: list[str]
    search: dict  # counts: predictions, candidates, simulations
    lossy_alternatives: list[LossyAlternative]  # per lossy precision the request leaves out
    # GPUs without a price in the request's mode: each one's fleet with the fewest GPUs that
    # meets the SLO, its cost None and `cost.price_needed` naming the field that gives one
    price_needed: list[Option] = field(default_factory=list)

    def best(self) -> Option | None:
        return self.options[0] if self.options else None

    def results(self) -> dict:
        """The results as the plan file holds them (advisor.export)."""
        return {
            "options": [o.as_dict() for o in self.options],
            "frontier": [o.as_dict() for o in self.frontier],
            "infeasible": [v.as_dict() for v in self.infeasible],
            "unfit": [v.as_dict() for v in self.unfit],
            "excluded": [v.as_dict() for v in self.excluded],
            "not_simulated": [v.as_dict() for v in self.not_simulated],
            "search": self.search,
            "lossy_alternatives": [a.as_dict() for a in self.lossy_alternatives],
            "price_needed": [o.as_dict() for o in self.price_needed],
        }


def recommend(request: Request, models, catalog, top: int = 5, lossy: bool = True) -> Plan:
    """Ranked options meeting the request; see the module docstring for the search. `lossy`
    False skips the lossy alternatives (a caller re-sizing a fixed option)."""
    if top < 1:
        raise AdvisorError(f"--top: expected an integer >= 1, got {top}")
    gpus, excluded = candidate_gpus(request, catalog)
    predictor = PredictionCache(models, request)
    found, notes = search_gpus(gpus, request, predictor)
    candidates, unfit_notes = [], {}
    for gpu in gpus:
        if notes[gpu.id].power:
            excluded.append(Verdict(gpu.id, notes[gpu.id].power))
            continue
        candidates += found.get(gpu.id, [])
        unfit_notes[gpu.id] = notes[gpu.id]
    priced = [c for c in candidates if not isinstance(c.price, NoPrice)]
    evaluated = branch_and_bound(priced, request, top)
    unpriced = size_unpriced([c for c in candidates if isinstance(c.price, NoPrice)], request)
    probed = Probed.of(models.records)
    met = sorted((_option(c, request, probed) for c in evaluated if c.sizing and c.sizing.n_gpus),
                 key=lambda o: (o.cost.usd_per_month, o.latency.at(request.slo_key)))
    options = rank_by_evidence(
        [o for i, o in enumerate(met) if all(p.gpu != o.gpu for p in met[:i])])
    options = [replace(o, rank=rank, reason=reason(o, candidates, request))
               for rank, o in enumerate(options, 1)]
    options[:top] = [_with_bases(o, candidates, request, predictor, models)
                     for o in options[:top]]
    price_needed = [_with_bases(o, candidates, request, predictor, models) for o in
                    _fewest_gpus([c for c in unpriced if c.sizing and c.sizing.n_gpus], request,
                                 probed)]
    ranked = {o.key: o for o in options}  # the frontier shows a ranked option as ranked
    frontier = [ranked.get(o.key, o) for o in pareto_front(met, request.slo_key)]
    shown = {o.gpu for o in options + price_needed}
    infeasible, unfit = gpu_verdicts(candidates, unfit_notes, shown, request)
    listed = shown | {v.gpu for v in infeasible + unfit}
    search = {"gpus": len(gpus), "predictions": predictor.count, "candidates": len(candidates),
              **_sized(evaluated + unpriced)}
    alternatives = []
    if lossy:
        alternatives, search["lossy"] = _lossy_alternatives(
            [g for g in gpus if not isinstance(gpu_price(g, request), NoPrice)], request,
            predictor, priced, options, top, probed)
    return Plan(
        request=request, options=options, frontier=frontier,
        infeasible=infeasible, unfit=unfit, excluded=excluded,
        not_simulated=not_simulated(priced, listed, request),
        assumptions=assumptions(request, lossy=bool(alternatives)), search=search,
        lossy_alternatives=alternatives, price_needed=price_needed,
    )


def _fewest_gpus(sized: list[Candidate], request: Request, probed) -> list[Option]:
    """Per GPU without a price, the option with the fewest GPUs (then the lowest latency),
    fewest first."""
    key = lambda c: (c.sizing.n_gpus, c.sizing.result.quantile_s(request.slo_quantile))
    best: dict[str, Candidate] = {}
    for c in sized:
        if c.gpu.id not in best or key(c) < key(best[c.gpu.id]):
            best[c.gpu.id] = c
    return [_option(c, request, probed) for c in sorted(best.values(), key=key)]


def _sized(evaluated: list[Candidate]) -> dict:
    """How many candidates branch and bound sized, by how many simulations."""
    return {"candidates_simulated": sum(c.sizing is not None and bool(c.sizing.trials)
                                        for c in evaluated),
            "simulations": sum(len(c.sizing.trials) + (c.sizing.unbounded is not None)
                               for c in evaluated if c.sizing)}


def _lossy_alternatives(gpus, request: Request, predictor: PredictionCache, candidates,
                        options: list[Option], top: int,
                        probed) -> tuple[list[LossyAlternative], dict]:
    """Per lossy precision the request leaves out, what allowing it would change: the cheapest
    option with it where it costs less than the first of `options` (the chosen one), the
    cheapest on the chosen GPU, and the GPUs where nothing of the request fits without offload
    but it does; each with the quality caveat. And the counts of that work.

    Kept cheap: its settings alone are searched (the request's are already), with the chosen
    option's attention backend (attention runs on bf16 activations whatever the weights), on
    the GPUs of the `top` options shown and those where nothing requested fits without offload
    (every GPU when no option meets the request), through the same predictor (its cache) and
    simulation cache; a candidate is sized only while it could cost less than the chosen one."""
    chosen = options[0] if options else None
    plain = {c.gpu.id for c in candidates if c.setting.offload == "none"}
    shown = {o.gpu for o in options[:top]}
    searched = [g for g in gpus if g.id in shown or g.id not in plain] if chosen else gpus
    ceiling = chosen.cost.usd_per_month if chosen else math.inf
    out, work, start = [], {"candidates": 0, "candidates_simulated": 0, "simulations": 0}, \
        predictor.count
    for precision in (q for q in QUANTIZATIONS if q not in request.precisions):
        alt = request.with_changes(precisions=(precision,), offload=("none",), attention=(
            (chosen.setting.attention,) if chosen else request.attention))
        entry = LossyAlternative(
            precision=precision, scheme=QUANTIZATIONS[precision].scheme, caveat=QUALITY_CAVEAT,
            searched=tuple(g.id for g in searched),
            not_offered={g.id: why for g in searched if (why := not_offered(g, precision))})
        try:
            found, notes = search_gpus(searched, alt, predictor)
        except AdvisorError as exc:  # models without figures for it: said, not fatal
            entry = replace(entry, error=f"not evaluated: {exc}")
            out.append(replace(entry, summary=lossy_summary(entry, chosen, request)))
            continue
        mine = [c for g in searched if not notes[g.id].power for c in found.get(g.id, [])]
        evaluated = branch_and_bound(mine, alt, 1, ceiling, frontier=False)
        best = _cheapest(evaluated, request, probed, chosen)
        # an option that costs what the chosen one does changes nothing worth a lossy precision
        if best is not None and chosen and best.versus_chosen.usd_per_month >= 0:
            best = None
        same = None
        if chosen and (best is None or best.gpu != chosen.gpu):
            # the chosen GPU's candidates, pruned above by the cheaper option on another GPU
            pruned = branch_and_bound([c for c in mine if c.gpu.id == chosen.gpu], alt, 1,
                                      ceiling, frontier=False)
            same = _cheapest(pruned, request, probed, chosen)
            seen = {id(c) for c in evaluated}
            evaluated += [c for c in pruned if id(c) not in seen]
        entry = replace(entry, best=best, on_chosen_gpu=same, fits_without_offload=tuple(
            _fits(g, found[g.id], request) for g in searched
            if g.id not in plain and found.get(g.id)))
        work["candidates"] += len(mine)
        for key, value in _sized(evaluated).items():
            work[key] += value
        out.append(replace(entry, summary=lossy_summary(entry, chosen, request)))
    return out, {"predictions": predictor.count - start, **work}


def _cheapest(evaluated: list[Candidate], request: Request, probed,
              chosen: Option | None) -> Option | None:
    """The cheapest option among sized candidates, with its change from the chosen option."""
    met = [_option(c, request, probed) for c in evaluated if c.sizing and c.sizing.n_gpus]
    best = min(met, key=lambda o: (o.cost.usd_per_month, o.latency.at(request.slo_key)),
               default=None)
    if best and chosen:
        best = replace(best, versus_chosen=Change(
            best.fleet.total_gpus - chosen.fleet.total_gpus,
            best.cost.usd_per_month - chosen.cost.usd_per_month))
    return best


def _fits(gpu, found: list[Candidate], request: Request) -> LossyFit:
    """A GPU that fits a lossy precision without offload: its fastest batch-of-one setting at
    the mix's first resolution, the largest batch that fits, and the SLO quantile of
    batch-of-one service over the mix (as sized: advisor.queueing.latency_floor_s), which more
    GPUs cannot lower."""
    label = request.resolutions[0].label
    ones = [c for c in found if c.max_batch == 1]
    fastest = min(ones, key=lambda c: c.predictions[label][1].latency.total_s)
    pred = fastest.predictions[label][1]
    floor = min(latency_floor_s(c.service, request.slo_quantile) for c in ones)
    return LossyFit(gpu.id, fastest.setting, label, pred.latency.total_s,
                    pred.latency.interval_s, pred.source, max(c.max_batch for c in found),
                    floor, floor <= request.slo_s)


@dataclass(frozen=True)
class Evaluation:
    """A saved option under current data: whether it holds, why not, and its figures now."""

    holds: bool
    problems: list[str]
    latency: PeakLatency | None = None
    cost: FleetCost | None = None

    def as_dict(self) -> dict:
        out = {"holds": self.holds, "problems": list(self.problems)}
        if self.latency is not None:
            out.update(latency=self.latency.as_dict(), cost=self.cost.as_dict())
        return out


def evaluate(request: Request, models, catalog, gpu_id: str, setting: Setting, max_batch: int,
             n_serving: int) -> Evaluation:
    """One given option (GPU, setting, max batch, serving GPUs) under current data: whether it
    fits, its simulated latency at peak and its cost. Used to re-check a saved plan."""
    try:
        gpu = catalog.get(gpu_id)
    except AdvisorError as exc:  # the catalog no longer has it: the plan no longer holds
        return Evaluation(False, [str(exc)])
    price = gpu_price(gpu, request)
    if isinstance(price, NoPrice):
        return Evaluation(False, [price.reason])
    batches = [b for b in request.batches if b <= max_batch]
    preds = PredictionCache(models, request).predict([(gpu, setting, b) for b in batches])
    problems = [f"{gpu.id} {setting.label}: {why}"
                for why in misfits(preds, gpu.id, setting, max_batch, request)]
    result = simulate_cached(service(gpu, setting, max_batch, batches, preds, request),
                             request.peak_images_per_s, n_serving, request.window_s,
                             request.simulation)
    latency = result.quantile_s(request.slo_quantile)
    if latency > request.slo_s:
        problems.append(f"{request.slo_label} {latency:.2f} s with {n_serving} GPUs, above the "
                        f"{request.slo_s:g} s SLO")
    power_w, _ = gpu_power(gpu, preds.values())
    cost = fleet_cost(request, price, power_w, n_serving + request.n_plus_one)
    problems += budget_problems(cost, request)
    return Evaluation(not problems, problems, PeakLatency.of(result), cost)


# --------------------------------------------------------------------------- point and hedge


def _with_bases(option: Option, candidates: list[Candidate], request: Request,
                predictor: PredictionCache, models) -> Option:
    """`option` with its `bases` when its figures are transferred to a GPU never probed: its
    fleet and monthly cost sized on the point prediction and on the 90% interval's upper end
    (the same GPU, setting and max batch), what probing the GPU can settle (the difference),
    and the probe to run. Unchanged for an option whose figures are all measured or fitted
    (both bases then differ by the interval of a probed GPU only)."""
    if "transferred" not in option.sources:
        return option
    c = next(c for c in candidates if c.gpu.id == option.gpu and c.max_batch ==
             option.max_batch and c.setting == option.setting)
    batches = [b for b in request.batches if b <= c.max_batch]
    preds = predictor.predict([(c.gpu, c.setting, b) for b in batches])
    out = {}
    for basis in ("point", "upper"):
        sized = request.with_changes(latency_basis=basis)
        if all(sized.sized_on_upper(p.source) == request.sized_on_upper(p.source)
               for p in preds.values()):
            sizing = c.sizing  # the request's own basis: the option as ranked
        else:
            sizing = size_fleet(service(c.gpu, c.setting, c.max_batch, batches, preds, sized),
                                request.peak_images_per_s, request.slo_quantile, request.slo_s,
                                request.window_s, request.max_gpus - request.n_plus_one,
                                request.simulation)
        n = sizing.n_gpus
        cost = fleet_cost(request, c.price, c.gpu_w, n + request.n_plus_one) if n else None
        out[basis] = Basis(
            serving_gpus=n, total_gpus=n + request.n_plus_one if n else None,
            usd_per_month=cost.usd_per_month if cost else None,
            latency_s=sizing.result.quantile_s(request.slo_quantile) if n else None,
            reason="" if n else sizing.reason)
    point, upper = out["point"], out["upper"]
    gpus = usd = None
    if point.total_gpus and upper.total_gpus:
        gpus = upper.total_gpus - point.total_gpus
        if point.usd_per_month is not None:
            usd = upper.usd_per_month - point.usd_per_month
    label = request.resolutions[0].label
    return replace(option, bases=Bases(
        point, upper, request.latency_basis, gpus, usd,
        probe_suggestion(models, c.gpu, preds[(c.gpu.id, c.setting, 1, label)])))


# --------------------------------------------------------------------------- results


TEST_MINUTES = 10  # the load test whose spread a plan states beside its long-run latency


def _short_test(c: Candidate, request: Request) -> ShortTest:
    """What a load test of the fleet at peak, about TEST_MINUTES long (at most a tenth of the
    simulation), measures of the SLO quantile: such a run sees less of the queue's long-run
    tail than the plan's figure holds (data/loadtests/README.md: 82 requests at 85% busy)."""
    rate, sim = request.peak_images_per_s, request.simulation
    n = max(20, min(round(rate * TEST_MINUTES * 60), sim.requests // 10))
    spread = run_quantile_range(c.service, rate, c.sizing.n_gpus, request.window_s, n,
                                request.slo_quantile, sim)
    return ShortTest(n, n / rate, None if spread is None else tuple(spread))


def _of_resolution(notes: list[str], label: str, request: Request) -> list[str]:
    """Caveats of one resolution's service times, saying which part of a mix they concern
    (the GPU-wide one, not runnable, stands as it is)."""
    if len(request.resolutions) < 2:
        return notes
    share = next(r.share for r in request.resolutions if r.label == label)
    return [x if x.startswith("not runnable") else f"{label} requests only ({share:.0%} of the "
            f"mix): {x}" for x in notes]


def _option(c: Candidate, request: Request, probed: Probed | None) -> Option:
    n = c.sizing.n_gpus
    cost = fleet_cost(request, c.price, c.gpu_w, n + request.n_plus_one)
    per_resolution, notes = {}, []
    shapes = {r.label: (r.height, r.width) for r in request.resolutions}
    for label, preds in c.predictions.items():
        one, full = preds[1], preds[c.max_batch]
        overhead, overhead_basis = overhead_s(c.gpu.id, *shapes[label])
        per_resolution[label] = ResolutionService(
            max_batch=c.max_batch, batch_1_s=one.latency.total_s,
            batch_1_interval_s=one.latency.interval_s, batch_1_source=one.source,
            max_batch_s=full.latency.total_s, max_batch_interval_s=full.latency.interval_s,
            sized_on="upper" if request.sized_on_upper(full.source) else "point",
            peak_memory_gb=full.memory.nvml_gb, memory_interval_gb=full.memory.nvml_interval_gb,
            memory_needed_gb=full.memory.needed_gb, source=full.source,
            source_detail=full.source_detail, endpoint_overhead_s=overhead,
            endpoint_overhead_basis=overhead_basis)
        notes += [x for x in _of_resolution(caveats(full, c.gpu, probed), label, request)
                  if x not in notes]
    if c.setting.precision in QUANTIZATIONS:
        notes.append(f"{c.setting.precision}: {QUALITY_CAVEAT}")
    least_sure = max((p for preds in c.predictions.values() for p in preds.values()),
                     key=lambda p: SOURCES.index(p.source))
    latency = PeakLatency.of(c.sizing.result, _short_test(c, request))
    return Option(
        gpu=c.gpu.id, gpu_name=c.gpu.name, setting=c.setting, max_batch=c.max_batch,
        window_s=request.window_s,
        fleet=Fleet(serving_gpus=n, spare_gpus=int(request.n_plus_one), servers=cost.servers,
                    throughput_lower_bound_gpus=c.n_lower,
                    simulated=tuple((k, v) for k, v in c.sizing.trials)),
        latency=latency, slo_headroom=1 - latency.at(request.slo_key) / request.slo_s,
        capacity_img_per_s=n / c.service.image_s_at_full_batch(), cost=cost,
        power_source=c.gpu_w_source, service=per_resolution,
        sources=tuple(sorted({x for s in per_resolution.values()
                              for x in (s.source, s.batch_1_source)}, key=SOURCES.index)),
        evidence=least_sure.source, accuracy=accuracy(least_sure), caveats=tuple(notes),
        model_version=next(iter(c.predictions.values()))[1].model_version)


def rank_by_evidence(options: list[Option]) -> list[Option]:
    """`options` (sorted by monthly cost) in ranking order. A near-tie prefers evidence: each
    rank goes to the best-evidenced option (measured, then fitted, then transferred, by its least
    sure figure) among those costing at most NEAR_TIE more than the cheapest option left; equal
    evidence, the cheaper. An option ranked above cheaper ones says so in `near_tie`."""
    left, ranked = list(options), []
    while left:
        limit = left[0].cost.usd_per_month * (1 + NEAR_TIE)
        pick = min((o for o in left if o.cost.usd_per_month <= limit),
                   key=lambda o: SOURCES.index(o.evidence))
        passed = left[:left.index(pick)]
        left.remove(pick)
        if passed:
            pick = replace(pick, near_tie=(
                f"above {', '.join(o.gpu for o in passed)} (at most {NEAR_TIE:.0%} "
                f"cheaper): its figures are {pick.evidence}, theirs "
                f"{'/'.join(sorted({o.evidence for o in passed}, key=SOURCES.index))}"))
        ranked.append(pick)
    return ranked


def pareto_front(options: list[Option], key: str) -> list[Option]:
    """The options no other option beats on both monthly cost and latency `key`."""
    front, best = [], math.inf
    for o in options:  # sorted by cost, so each new frontier point must be faster
        if o.latency.at(key) < best:
            front.append(o)
            best = o.latency.at(key)
    return front
