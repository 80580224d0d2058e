"""advisor.request and advisor.plan: request validation, search, sizing, cost, ranking, CLI.

The fitted models are replaced by tests.fake_models.FakeModels, a test double with a simple
known law, so the sizing can be checked exactly.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from advisor.catalog import load_catalog
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.contract import ATTENTIONS, QUALITY_CAVEAT, QUANTIZATIONS, Setting
from advisor.cost import HOURS_PER_MONTH, FleetCost, Price, gpus_within
from advisor.options import Change, Fleet, Option, PeakLatency
from advisor.plan import rank_by_evidence, recommend
from advisor.search import PARETO_COST_WINDOW, interpolate
from advisor.overhead import overhead_s
from advisor.queueing import Service, simulate
from advisor.request import Request
from tests.fake_models import FakeModels, batch_latency_s

CATALOG = load_catalog()
H100 = "h100-sxm-80gb"
PRICE = 3.0  # USD per GPU-hour, set in the request so catalog edits do not move the tests

# One GPU, one setting, one resolution: the sizing can be checked by hand.
SIMPLE = {
    "resolutions": [{"height": 1024, "width": 1024, "share": 1.0}],
    "demand": {"images_per_s": 4.0},
    "slo": {"p95_s": 6.0},
    "candidates": {"gpus": [H100]},
    "settings": {"precisions": ["bf16"], "batches": [1, 2, 4], "compile": [False],
                 "attention": ["native"], "offload": ["none"], "vae_compile": [False],
                 "vae_channels_last": [False]},
    "deployment": {"cloud": {"usd_per_gpu_hour": {H100: PRICE}}},
}

MIX = [{"height": 1024, "width": 1024, "share": 0.6}, {"height": 1344, "width": 768, "share": 0.3},
       {"height": 512, "width": 512, "share": 0.1}]


def request(base=SIMPLE, **changes) -> Request:
    """`base` with dotted-key changes, validated."""
    return Request.from_dict(base, overrides=changes)


def plan_for(req: Request, top: int = 5, models=None, lossy: bool = True):
    return recommend(req, models or FakeModels(CATALOG), CATALOG, top=top, lossy=lossy)


# --------------------------------------------------------------------------- request


def test_example_request_is_valid_and_round_trips():
    req = Request.from_yaml("examples/request.yaml")
    assert [r.label for r in req.resolutions] == ["1024x1024", "768x1344", "512x512"]
    assert req.images_per_s == pytest.approx(400_000 / 86_400)
    assert req.peak_images_per_s == pytest.approx(2.5 * 400_000 / 86_400)
    assert (req.slo_quantile, req.slo_s, req.n_plus_one) == (0.95, 10.0, True)
    again = Request.from_dict(req.to_dict(), source=req.source)
    assert again == req


def test_defaults_fill_a_minimal_request():
    req = Request.from_dict({"demand": {"images_per_s": 1}, "slo": {"p99_s": 5}})
    assert req.resolutions[0].label == "1024x1024" and req.steps == 9 and not req.cfg
    assert req.slo_label == "p99" and req.gpus is None and req.deployment.mode == "cloud"
    assert req.precisions == ("bf16",)  # nothing lossy unless asked for


def test_a_request_may_allow_quantized_precisions():
    req = request(**{"settings.precisions": ["bf16", "int8-wo", "fp8"]})
    assert req.precisions == ("bf16", "int8-wo", "fp8")
    assert Request.from_dict(req.to_dict()) == req


def test_overrides_replace_the_other_way_of_giving_demand_and_slo():
    req = request(**{"demand.images_per_day": 86_400, "slo.p99_s": 9})
    assert req.images_per_s == 1.0 and req.demand_unit == "images_per_day"
    assert (req.slo_quantile, req.slo_s) == (0.99, 9.0)


BAD_FIELDS = [
    # (dotted key or top-level key, bad value, text the message must contain)
    ("resolutions", "1024x1024", "field 'resolutions': expected a non-empty list"),
    ("resolutions", [{"height": 1000, "width": 1024, "share": 1}],
     "field 'resolutions[0].height': expected a positive multiple of 16"),
    ("resolutions", [{"height": 1024, "width": -16, "share": 1}],
     "field 'resolutions[0].width': expected a positive multiple of 16"),
    ("resolutions", [{"height": 1024, "width": 1024, "share": 0.5},
                     {"height": 512, "width": 512, "share": 0.4}],
     "field 'resolutions': expected shares that add up to 1, found a total of 0.9"),
    ("resolutions", [{"height": 1024, "width": 1024, "share": 0.5},
                     {"height": 512, "width": 512}],
     "field 'resolutions[1].share': expected a number > 0 and <= 1, found nothing"),
    ("resolutions", [{"height": 1024, "width": 1024, "share": 1, "shares": 1}],
     "unknown field 'resolutions[0].shares'; did you mean 'share'?"),
    ("steps", 0, "field 'steps': expected an integer 1..100, found number 0"),
    ("guidance_scale", "none", "field 'guidance_scale': expected a number >= 0"),
    ("caption_tokens", 600, "field 'caption_tokens': expected an integer 1..512"),
    ("resolutions", [{"height": 100000, "width": 100000}], "field 'resolutions[0].height': "
     "expected at most 8192 pixels, got 100000: the transformer's rotary position table"),
    ("resolutions", [{"height": 1024, "width": 8208}],
     "field 'resolutions[0].width': expected at most 8192 pixels"),
    ("demand.images_per_s", -3, "field 'demand.images_per_s': expected a number > 0"),
    ("demand.images_per_s", 1e30, "field 'demand.images_per_s': expected a number > 0 and "
     "<= 1e+06, found number 1e+30"),
    ("demand.images_per_s", "1e30", "found string '1e30' (a number in quotes is text"),
    ("demand.images_per_day", "lots", "field 'demand.images_per_day': expected a number > 0"),
    ("demand.peak_factor", 0.5, "field 'demand.peak_factor': expected a number >= 1"),
    ("slo.p95_s", "fast", "field 'slo.p95_s': expected a number > 0, found string 'fast'"),
    ("candidates.gpus", "h100", "field 'candidates.gpus': expected \"all\" or a non-empty list"),
    ("candidates.segments", ["cloud"], "field 'candidates.segments': expected a non-empty list "
     "of datacenter, workstation, consumer"),
    ("settings.precisions", ["bf8"], "field 'settings.precisions': expected a non-empty list of "
     "bf16, fp16, fp32, fp32-tf32, fp8, fp8-wo, int8-wo (fp8, fp8-wo, int8-wo are lossy: listed "
     "only when wanted)"),
    ("settings.precisions", ["bf16", "int8"], "found the list ['bf16', 'int8']: 'int8' is not "
     "one of them; did you mean 'int8-wo'?"),
    ("settings.batches", [2, 4], "field 'settings.batches': expected a list that includes 1"),
    ("settings.batches", [1, 0], "field 'settings.batches': expected a non-empty list of "
     "integers 1..256"),
    ("settings.compile", ["yes"], "field 'settings.compile': expected a non-empty list of "
     "true/false"),
    ("settings.attention", ["sdpa"], "field 'settings.attention': expected a non-empty list of "
     "native, cudnn, flash"),
    ("settings.offload", ["cpu"], "field 'settings.offload': expected a non-empty list of none, "
     "model, sequential"),
    ("batching.window_s", -1, "field 'batching.window_s': expected a number >= 0"),
    ("memory_margin_gb", "1GB", "field 'memory_margin_gb': expected a number >= 0"),
    ("latency_basis", "mean", "field 'latency_basis': expected one of auto, point, upper"),
    ("deployment.mode", "rent", "field 'deployment.mode': expected one of cloud, owned"),
    ("deployment.gpus_per_server", 0, "field 'deployment.gpus_per_server': expected an integer "
     "1..64"),
    ("deployment.pue", 0.8, "field 'deployment.pue': expected a number >= 1 and <= 3"),
    ("deployment.server_w", "800W", "field 'deployment.server_w': expected a number >= 0"),
    ("deployment.cloud.usd_per_gpu_hour", 2.5, "field 'deployment.cloud.usd_per_gpu_hour': "
     "expected a mapping of GPU id to price in USD"),
    ("deployment.cloud.usd_per_gpu_hour", {H100: -1}, "field "
     "'deployment.cloud.usd_per_gpu_hour.h100-sxm-80gb': expected a positive price in USD"),
    ("deployment.owned.gpu_price_usd", {H100: "25k"}, "field "
     "'deployment.owned.gpu_price_usd.h100-sxm-80gb': expected a positive price in USD"),
    ("deployment.owned.server_usd", -5, "field 'deployment.owned.server_usd': expected a number "
     ">= 0"),
    ("deployment.owned.amortization_years", 0, "field 'deployment.owned.amortization_years': "
     "expected a number > 0 and <= 30"),
    ("deployment.owned.usd_per_kwh", 50, "field 'deployment.owned.usd_per_kwh': expected a "
     "number >= 0 and <= 10"),
    ("constraints.max_gpus", 2.5, "field 'constraints.max_gpus': expected an integer"),
    ("constraints.max_usd_per_month", 0, "field 'constraints.max_usd_per_month': expected a "
     "number > 0"),
    ("constraints.max_capex_usd", "a lot", "field 'constraints.max_capex_usd': expected a "
     "number > 0"),
    ("constraints.n_plus_one", "yes", "field 'constraints.n_plus_one': expected true or false"),
    ("simulation.requests", 10, "field 'simulation.requests': expected an integer 1000.."),
    ("simulation.seed", -1, "field 'simulation.seed': expected an integer 0.."),
    ("slo", {"p90_s": 3}, "unknown field 'slo.p90_s'; did you mean 'p99_s'?"),
    ("deployment.cloud", {"usd_per_hour": {}}, "unknown field 'deployment.cloud.usd_per_hour'"),
    ("demand", [1], "field 'demand': expected a mapping with keys images_per_s, images_per_day"),
]


@pytest.mark.parametrize("key, value, message", BAD_FIELDS,
                         ids=[f"{k}={v!r}"[:60] for k, v, _ in BAD_FIELDS])
def test_each_malformed_field_has_its_own_message(key, value, message):
    with pytest.raises(AdvisorError) as err:
        Request.from_dict(SIMPLE, source="req.yaml", overrides={key: value})
    assert str(err.value).startswith("req.yaml: ")
    assert message in str(err.value)


def test_demand_and_slo_need_exactly_one_form():
    with pytest.raises(AdvisorError, match="field 'demand': expected exactly one of "
                                           "images_per_s or images_per_day .*found both"):
        Request.from_dict({**SIMPLE, "demand": {"images_per_s": 1, "images_per_day": 9}})
    with pytest.raises(AdvisorError, match="field 'slo': expected exactly one of p95_s or p99_s"
                                           r".*found neither"):
        Request.from_dict({**SIMPLE, "slo": {}})
    with pytest.raises(AdvisorError, match="field 'slo': .*section is missing"):
        Request.from_dict({"demand": {"images_per_s": 1}})


def test_unknown_top_level_field_and_bad_yaml(tmp_path):
    with pytest.raises(AdvisorError, match="unknown field 'deman'; did you mean 'demand'"):
        Request.from_dict({**SIMPLE, "deman": {}})
    bad = tmp_path / "req.yaml"
    bad.write_text("demand: [unclosed\n")
    with pytest.raises(AdvisorError, match=r"req.yaml: line 2, column 1: invalid YAML"):
        Request.from_yaml(bad)
    with pytest.raises(AdvisorError, match="request file not found"):
        Request.from_yaml(tmp_path / "missing.yaml")


def test_unknown_gpu_ids_name_close_matches():
    with pytest.raises(AdvisorError, match=r"candidates.gpus: unknown GPU id 'h100-sxm'.*did you "
                                           "mean h100-sxm-80gb"):
        plan_for(request(**{"candidates.gpus": ["h100-sxm"]}))
    with pytest.raises(AdvisorError, match="usd_per_gpu_hour: unknown GPU id 'rtx4090'.*rtx-4090"):
        plan_for(request(**{"deployment.cloud.usd_per_gpu_hour": {"rtx4090": 1.0}}))


# --------------------------------------------------------------------------- sizing


def test_service_times_are_the_predictions_and_linear_between_batches():
    plan = plan_for(request(**{"settings.batches": [1, 4], "demand.images_per_s": 20.0,
                               "slo.p95_s": 30}))
    gpu = CATALOG.get(H100)
    option = plan.options[0]
    assert option.max_batch == 4
    service = option.service["1024x1024"]
    assert service.batch_1_s == pytest.approx(batch_latency_s(gpu, 1024, 1024, 1))
    assert service.max_batch_s == pytest.approx(batch_latency_s(gpu, 1024, 1024, 4))
    assert interpolate({1: 1.0, 4: 2.5}, 3) == pytest.approx(2.0)


def test_fleet_is_the_smallest_meeting_the_slo_at_peak():
    req = request(**{"demand.peak_factor": 2.0})
    option = plan_for(req).options[0]
    n, b = option.fleet.serving_gpus, option.max_batch
    times = tuple(batch_latency_s(CATALOG.get(H100), 1024, 1024, k) for k in range(1, b + 1))
    overhead = option.service["1024x1024"].endpoint_overhead_s
    assert overhead == overhead_s(H100, 1024, 1024)[0] > 0
    service = Service(times_s=(times,), shares=(1.0,), overhead_s=(overhead,))

    def p95(gpus: int) -> float:
        return simulate(service, 8.0, gpus, req.window_s, req.simulation).p95_s

    assert p95(n) <= 6.0 < p95(n - 1)
    assert option.latency.p95_s == pytest.approx(p95(n))
    assert n >= option.fleet.throughput_lower_bound_gpus


def test_fleet_size_and_cost_are_monotone_in_demand():
    sizes, costs = [], []
    for rate in (0.5, 2, 8, 32, 128):
        option = plan_for(request(**{"demand.images_per_s": rate})).options[0]
        sizes.append(option.fleet.serving_gpus)
        costs.append(option.cost.usd_per_month)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    assert costs == sorted(costs)


def test_tighter_slo_is_never_cheaper():
    base = {**SIMPLE, "resolutions": MIX,
            "candidates": {"gpus": [H100, "b200-sxm-180gb", "l40s-48gb"]},
            "deployment": {"cloud": {"usd_per_gpu_hour": {H100: 3.0, "b200-sxm-180gb": 6.0,
                                                          "l40s-48gb": 1.0}}}}
    costs = []
    for slo in (30, 12, 6, 4, 3):
        plan = plan_for(request(base, **{"slo.p95_s": slo, "demand.images_per_s": 10}))
        costs.append(plan.best().cost.usd_per_month if plan.best() else math.inf)
    assert costs == sorted(costs)
    assert costs[0] < costs[-2]


def test_n_plus_one_adds_a_gpu_of_capacity_and_its_cost():
    without = plan_for(request(**{"demand.images_per_s": 6.0})).options[0]
    with_spare = plan_for(request(**{"demand.images_per_s": 6.0,
                                     "constraints.n_plus_one": True})).options[0]
    assert with_spare.fleet.serving_gpus == without.fleet.serving_gpus
    assert with_spare.fleet.total_gpus == without.fleet.total_gpus + 1
    assert with_spare.cost.usd_per_month == pytest.approx(
        without.cost.usd_per_month + PRICE * HOURS_PER_MONTH)


def test_cloud_cost_arithmetic():
    req = request(**{"demand.images_per_s": 6.0})
    option = plan_for(req).options[0]
    n = option.fleet.total_gpus
    cost = option.cost
    assert cost.usd_per_month == pytest.approx(n * PRICE * HOURS_PER_MONTH)
    assert cost.usd_per_1k_images == pytest.approx(
        cost.usd_per_month / (6.0 * HOURS_PER_MONTH * 3600) * 1000)
    assert cost.capex_usd == 0
    gpu = CATALOG.get(H100)
    servers = math.ceil(n / 8)
    assert cost.power_kw == pytest.approx((n * gpu.tdp_w + servers * 800) * 1.3 / 1000)
    assert cost.price.source == f"request deployment.cloud.usd_per_gpu_hour.{H100}"


def test_gpus_within_a_monthly_cost():
    req = request(**{"constraints.n_plus_one": True})
    price = Price(PRICE, "usd_per_gpu_hour", "test")
    per_gpu = PRICE * HOURS_PER_MONTH
    assert gpus_within(math.inf, req, price, 700.0, n_lower=3) is None
    for serving in (2, 3, 4, 37, 100):  # the spare GPU counts in the cost
        assert gpus_within((serving + 1) * per_gpu, req, price, 700.0, n_lower=3) == serving
        assert gpus_within((serving + 1.5) * per_gpu, req, price, 700.0, n_lower=3) == serving


def test_owned_cost_arithmetic():
    req = request(**{"deployment.mode": "owned", "deployment.gpus_per_server": 4,
                     "deployment.owned.gpu_price_usd": {H100: 25_000},
                     "deployment.owned.server_usd": 20_000,
                     "deployment.owned.amortization_years": 4,
                     "deployment.owned.usd_per_kwh": 0.10, "demand.images_per_s": 6.0})
    option = plan_for(req).options[0]
    n, cost = option.fleet.total_gpus, option.cost
    servers = math.ceil(n / 4)
    capex = n * 25_000 + servers * 20_000
    kw = (n * CATALOG.get(H100).tdp_w + servers * 800) * 1.3 / 1000
    assert cost.capex_usd == pytest.approx(capex)
    assert cost.power_kw == pytest.approx(kw)
    assert cost.usd_per_month == pytest.approx(capex / 48 + kw * HOURS_PER_MONTH * 0.10)


def test_larger_batches_win_when_the_slo_allows_and_lose_when_it_does_not():
    loose = plan_for(request(**{"demand.images_per_s": 20.0, "slo.p95_s": 30})).options[0]
    tight = plan_for(request(**{"demand.images_per_s": 20.0, "slo.p95_s": 2.5})).options[0]
    assert loose.max_batch == 4 and tight.max_batch == 1
    assert tight.fleet.serving_gpus > loose.fleet.serving_gpus


def test_reason_explains_batch_and_fleet_size():
    option = plan_for(request(**{"demand.images_per_s": 6.0})).options[0]
    n = option.fleet.serving_gpus
    assert option.reason.startswith(f"batch {option.max_batch}: ")
    assert f"{n} GPUs: the fewest with p95" in option.reason
    assert f"{n - 1} GPUs" in option.reason


# --------------------------------------------------------------------------- search


def full_catalog_request(**changes) -> Request:
    prices = {g.id: 0.5 + g.memory_gb / 40 for g in CATALOG.gpus}
    return request({"resolutions": MIX, "demand": {"images_per_day": 300_000,
                                                   "peak_factor": 2},
                    "slo": {"p95_s": 8}, "deployment": {"cloud": {"usd_per_gpu_hour": prices}}},
                   **changes)


def test_ranking_frontier_and_every_gpu_accounted_for():
    plan = plan_for(full_catalog_request())
    costs = [o.cost.usd_per_month for o in plan.options]
    assert costs == sorted(costs) and len({o.gpu for o in plan.options}) == len(plan.options)
    front = plan.frontier
    assert [o.cost.usd_per_month for o in front] == sorted(
        o.cost.usd_per_month for o in front)
    latencies = [o.latency.p95_s for o in front]
    assert latencies == sorted(latencies, reverse=True) and front[0] is plan.options[0]
    listed = [o.gpu for o in plan.options] + [x.gpu for x in
                                                 plan.infeasible + plan.unfit + plan.excluded +
                                                 plan.not_simulated]
    assert sorted(listed) == sorted(g.id for g in CATALOG.gpus)
    assert {x.gpu for x in plan.excluded} == {g.id for g in CATALOG.gpus if not g.runnable}


def test_pruning_does_not_change_the_best_option():
    req = full_catalog_request()
    pruned = plan_for(req, top=1)
    exhaustive = plan_for(req, top=100)
    assert pruned.best() == replace(exhaustive.best(), reason=pruned.best().reason)
    assert pruned.search["candidates_simulated"] < exhaustive.search["candidates_simulated"]


def test_pruning_keeps_the_top_options_and_the_frontier_within_its_window():
    req = full_catalog_request()
    pruned, exhaustive = plan_for(req, top=3), plan_for(req, top=100)

    def key(o):
        return o.gpu, o.setting, o.max_batch, o.fleet.total_gpus, o.latency

    assert [key(o) for o in pruned.options[:3]] == [key(o) for o in exhaustive.options[:3]]
    window = PARETO_COST_WINDOW * exhaustive.best().cost.usd_per_month
    assert [key(o) for o in pruned.frontier] == [
        key(o) for o in exhaustive.frontier if o.cost.usd_per_month <= window]
    assert pruned.search["simulations"] < exhaustive.search["simulations"]
    # a GPU whose search stopped at the cost of the options found is listed with its bound
    shown = {o.gpu for o in pruned.options}
    for g in pruned.not_simulated:
        assert g.gpu not in shown
        cheapest = min((o for o in exhaustive.options if o.gpu == g.gpu),
                       key=lambda o: o.cost.usd_per_month, default=None)
        if cheapest:
            assert g.usd_per_month_at_least <= cheapest.cost.usd_per_month + 1e-6


def test_search_stops_at_the_first_misfit_and_after_batch_one_when_too_slow():
    """Batches are predicted smallest first: a setting leaves the search at its first batch that
    does not fit, and after batch 1 when batch-of-one service alone misses the SLO."""
    # fake law at 2048x2048 (4 MP): 20.6 GB + 8 GB per image; batch 8 needs 85.6 GB on 80 GB
    big = request(**{"resolutions": [{"height": 2048, "width": 2048, "share": 1.0}],
                     "settings.batches": [1, 2, 8, 16], "slo.p95_s": 60})
    models = FakeModels(CATALOG)
    plan = plan_for(big, models=models)
    assert plan.search["predictions"] == 3  # batches 1, 2 and 8
    assert models.calls == 3 + plan.search["lossy"]["predictions"]  # the alternatives apart
    assert plan.search["candidates"] == 2 and plan.options[0].max_batch == 2
    assert "; batch 8 does not fit (" in plan.options[0].reason
    slow = request(**{"candidates.gpus": ["rtx-5080"], "settings.offload": ["none", "model"],
                      "settings.batches": [1, 2, 4, 8, 16],
                      "deployment.cloud.usd_per_gpu_hour": {"rtx-5080": 0.5}})
    models = FakeModels(CATALOG)
    plan = plan_for(slow, models=models, lossy=False)
    assert models.calls == 2  # batch 1 without offload (does not fit), with model offload
    assert "fits only with model offload at " in plan.unfit[0].reason


def test_gpu_where_nothing_fits_says_why():
    req = request(**{"candidates.gpus": ["rtx-5080"], "settings.offload": ["none", "model"],
                     "deployment.cloud.usd_per_gpu_hour": {"rtx-5080": 0.5}})
    plan = plan_for(req)
    assert not plan.options
    (unfit,) = plan.unfit
    need = 20.6 + 2.0  # fake law: bf16 weights + activations of one 1-megapixel image
    assert unfit.reason.startswith(f"needs {need:.1f} GB + 1.0 GB margin at batch 1 (bf16 "
                                      "native), has 17.2 GB; fits only with model offload at ")  # 16 GiB
    assert "too slow for the p95 <= 6 s SLO" in unfit.reason


def test_offload_option_is_ranked_when_it_meets_the_slo():
    req = request(**{"candidates.gpus": ["rtx-5080"], "slo.p95_s": 60,
                     "demand.images_per_s": 0.5, "settings.offload": ["none", "model"],
                     "deployment.cloud.usd_per_gpu_hour": {"rtx-5080": 0.5}})
    (option,) = plan_for(req).options
    assert option.setting.offload == "model"


def test_memory_margin_limits_the_batch():
    base = request(**{"demand.images_per_s": 20.0, "slo.p95_s": 30})
    assert plan_for(base).options[0].max_batch == 4
    # fake law at 1024x1024: 20.6 GB + 2 GB per image; the H100 has 81,559 MiB = 85.5 GB
    capacity = CATALOG.get(H100).capacity_gb
    squeezed = base.with_changes(memory_margin_gb=capacity - 20.6 - 2 * 4 + 0.1)
    best = plan_for(squeezed).options[0]
    assert best.max_batch == 2
    assert "; batch 4 does not fit (1024x1024: needs 85.6 GB (torch allocated 28.6 GB + " \
        "57.0 GB margin), over 85.5 GB)." in best.reason


def test_reason_names_what_the_next_batch_would_need():
    tight = plan_for(request(**{"demand.images_per_s": 20.0, "slo.p95_s": 2.5})).options[0]
    assert tight.max_batch == 1
    b1 = batch_latency_s(CATALOG.get(H100), 1024, 1024, 1)
    assert f"batch 1: {1 / b1:.2f} img/s per GPU at full batches; batch 2 cannot serve the " \
        "request: p95 " in tight.reason
    tie = plan_for(request(**{"demand.images_per_s": 4.0, "slo.p95_s": 10})).options[0]
    assert tie.max_batch == 2 and "; batch 4 needs as many GPUs, with p95 " in tie.reason
    loose = plan_for(request(**{"demand.images_per_s": 20.0, "slo.p95_s": 30})).options[0]
    assert loose.max_batch == 4 and "; the largest batch searched." in loose.reason


def test_precision_rules_from_specs():
    models = FakeModels(CATALOG)
    req = request(**{"settings.precisions": ["bf16", "fp16", "fp32"],
                     "candidates.gpus": [H100, "t4-16gb"], "settings.offload": ["none", "model"],
                     "slo.p95_s": 600, "demand.images_per_s": 0.1,
                     "deployment.cloud.usd_per_gpu_hour": {H100: 3, "t4-16gb": 0.3}})
    plan = plan_for(req, models=models)
    by_gpu = {o.gpu: o for o in plan.options}
    assert by_gpu[H100].setting.precision == "bf16"
    assert by_gpu["t4-16gb"].setting.precision == "fp16"  # the T4 has no bf16 path


def test_flash_and_cudnn_attention_are_not_planned_below_compute_capability_8():
    from advisor.search import not_offered

    t4, v100 = CATALOG.get("t4-16gb"), CATALOG.get("v100-sxm2-32gb")
    for gpu in (t4, v100):
        for attention in ("flash", "cudnn"):
            assert f"{attention} attention needs compute capability 8.0" in not_offered(
                gpu, "fp16", attention=attention)
        assert not_offered(gpu, "fp16", attention="native") is None
    assert not_offered(CATALOG.get("a10-24gb"), "bf16", attention="flash") is None
    req = request(**{"settings.precisions": ["fp16"], "settings.attention": list(ATTENTIONS),
                     "candidates.gpus": ["t4-16gb", "v100-sxm2-32gb"], "slo.p95_s": 600,
                     "demand.images_per_s": 0.1, "deployment.cloud.usd_per_gpu_hour":
                     {"t4-16gb": 0.3, "v100-sxm2-32gb": 1.0}})
    plan = plan_for(req)
    assert plan.options and {o.setting.attention for o in plan.options} == {"native"}


def test_each_lossy_precision_left_out_says_what_it_would_change():
    req = request(**{"demand.images_per_s": 8.0})
    plan = plan_for(req)
    assert plan.options == plan_for(req, lossy=False).options  # the plan itself is unchanged
    alternatives = {a.precision: a for a in plan.lossy_alternatives}
    assert list(alternatives) == list(QUANTIZATIONS)
    assert all(a.caveat == QUALITY_CAVEAT for a in alternatives.values())
    chosen = plan.best()
    # fp8 runs at the H100's fp8 peak in the fake law: fewer GPUs, the same as planning with it
    fp8 = alternatives["fp8"].best
    alone = plan_for(request(**{"demand.images_per_s": 8.0, "settings.precisions": ["fp8"]}))
    assert (fp8.setting, fp8.fleet, fp8.cost) == (
        alone.best().setting, alone.best().fleet, alone.best().cost)
    fewer = chosen.fleet.total_gpus - fp8.fleet.total_gpus
    saved = chosen.cost.usd_per_month - fp8.cost.usd_per_month
    assert fewer > 0 and fp8.versus_chosen == Change(-fewer, -saved)
    assert f"fp8: {QUALITY_CAVEAT}" in fp8.caveats
    assert alternatives["fp8"].summary[0] == (
        f"fp8: {fp8.fleet.serving_gpus} x {H100} (fp8 native, batch {fp8.max_batch}), "
        f"${fp8.cost.usd_per_month:,.0f}/month, p95 {fp8.latency.p95_s:.2f} s: "
        f"{fewer} fewer GPU{'s' if fewer > 1 else ''}, ${saved:,.0f} less a month than the "
        "chosen plan")
    # the weight-only ones compute at the bf16 rate, dequantizing: nothing cheaper
    assert alternatives["int8-wo"].best is None
    assert alternatives["int8-wo"].summary == ("int8-wo: nothing cheaper than the chosen plan",)
    assert any(a.startswith("lossy alternatives: each quantized precision") and QUALITY_CAVEAT in a
               for a in plan.assumptions)
    assert plan.search["lossy"]["predictions"] > 0


def test_a_lossy_precision_that_fits_a_16gb_card_without_offload_says_so():
    card = "rtx-5080"  # 17.2 GB: bf16 (20.6 GB in the fake law) needs model offload
    req = request(**{"candidates.gpus": [card], "slo.p95_s": 60, "demand.images_per_s": 0.5,
                     "settings.offload": ["none", "model"],
                     "deployment.cloud.usd_per_gpu_hour": {card: 0.5}})
    plan = plan_for(req)
    assert plan.best().setting.offload == "model"
    int8 = next(a for a in plan.lossy_alternatives if a.precision == "int8-wo")
    (fits,) = int8.fits_without_offload
    assert fits.gpu == card and fits.setting.offload == "none"
    assert fits.batch_1_s == pytest.approx(
        batch_latency_s(CATALOG.get(card), 1024, 1024, 1, "int8-wo"))
    assert fits.meets_slo_at_batch_1 and fits.max_batch == 2  # 10.8 + 2 x 2 GB + 1 GB
    assert int8.summary[-1] == (f"fits without offload where nothing requested does (batch 1, "
                                   f"1024x1024): {card} {fits.batch_1_s:.2f} s (int8-wo "
                                   "native, fitted, fits up to batch 2)")


def test_with_no_option_the_lossy_alternatives_say_what_would_meet_the_request():
    card = "rtx-5080"
    req = request(**{"candidates.gpus": [card], "slo.p95_s": 60, "demand.images_per_s": 0.5,
                     "deployment.cloud.usd_per_gpu_hour": {card: 0.5}})
    plan = plan_for(req)
    assert not plan.options and plan.unfit
    fp8 = next(a for a in plan.lossy_alternatives if a.precision == "fp8")
    assert fp8.best.gpu == card and fp8.best.versus_chosen is None
    assert fp8.summary[0].endswith(": meets the request")


def test_fp8_is_neither_searched_nor_predicted_below_compute_capability_8_9():
    a100 = "a100-sxm-80gb"  # compute capability 8.0: FakeModels refuses fp8 on it, as the models
    req = request(**{"candidates.gpus": [a100], "deployment.cloud.usd_per_gpu_hour": {a100: 2}})
    plan = plan_for(req)
    fp8 = next(a for a in plan.lossy_alternatives if a.precision == "fp8")
    assert "compute capability 8.9" in fp8.not_offered[a100]
    assert fp8.best is None and any(line.startswith(f"not offered on {a100}: fp8 needs fp8 "
                                                       "support") for line in fp8.summary)
    only = plan_for(request(**{"candidates.gpus": [a100], "settings.precisions": ["fp8"],
                               "deployment.cloud.usd_per_gpu_hour": {a100: 2}}))
    assert only.unfit[0].reason.startswith("fp8: fp8 needs fp8 support")


def test_an_allowed_lossy_precision_is_searched_without_offload_and_carries_the_caveat():
    small = "rtx-4070-ti"  # 12.9 GB: fp8 needs 13.8 GB at batch 1, and never with offload
    req = request(**{"candidates.gpus": [H100, small], "settings.precisions": ["bf16", "fp8"],
                     "settings.offload": ["none", "model"],
                     "deployment.cloud.usd_per_gpu_hour": {H100: PRICE, small: 0.5}})
    plan = plan_for(req)  # FakeModels raises for a quantized precision with offload
    best = plan.best()
    assert best.setting.precision == "fp8" and f"fp8: {QUALITY_CAVEAT}" in best.caveats
    assert [a.precision for a in plan.lossy_alternatives] == ["fp8-wo", "int8-wo"]
    # the small card: fp8 does not fit, and the offload figure is bf16's (20.6 x 0.6 + 2 + 1)
    assert plan.unfit[0].reason == ("needs 12.8 GB + 1.0 GB margin at batch 1 (fp8 native), "
                                       "has 12.9 GB; does not fit even with offload (needs 15.4 "
                                       "GB)")
    assert any("searched without offload only" in a for a in plan.assumptions)


def test_models_without_figures_for_a_lossy_precision_leave_the_plan_whole():
    plan = plan_for(request(), models=FakeModels(CATALOG, lacking=QUANTIZATIONS))
    assert plan.options == plan_for(request(), lossy=False).options
    assert [a.summary for a in plan.lossy_alternatives] == [
        (f"{q}: not evaluated: {H100} 1024x1024 b1 {q} native: no measurements at {q}",)
        for q in QUANTIZATIONS]


def test_budget_and_max_gpus_constraints():
    capped = plan_for(request(**{"demand.images_per_s": 20.0, "constraints.max_gpus": 3}))
    assert not capped.options and "max_gpus is 3" in capped.infeasible[0].reason
    broke = plan_for(request(**{"constraints.max_usd_per_month": 100}))
    assert not broke.options and "over the $100 budget" in broke.infeasible[0].reason


def test_gpu_without_price_is_sized_and_listed_with_the_field_to_set():
    h800 = "h800-sxm-80gb"  # no cloud rents it in the catalog
    plan = plan_for(request(**{"candidates.gpus": [H100, h800]}))
    assert not plan.excluded and [o.gpu for o in plan.options] == [H100]
    [listed] = plan.price_needed
    assert listed.gpu == h800 and listed.fleet.serving_gpus >= 1
    assert listed.cost.usd_per_month is None and listed.cost.price is None
    needed = listed.cost.price_needed
    assert needed.field == f"prices.{h800}.cloud_usd_per_hour"
    assert needed.unrented and "no cloud rents it" in needed.reason
    # its fleet is the fewest GPUs meeting the SLO, as a priced GPU's would be
    priced = plan_for(request(**{"candidates.gpus": [h800],
                                 "deployment.cloud.usd_per_gpu_hour": {h800: 2.0}}))
    assert priced.options[0].fleet == listed.fleet


def test_price_sheet_overrides_catalog_and_request_and_says_where_from(tmp_path):
    sheet = tmp_path / "prices.yaml"
    sheet.write_text("prices:\n  h100-sxm-80gb: {buy_usd: 21000, cloud_usd_per_hour: 1.5, "
                     "date: 2026-12-01, note: our quote}\n")
    from advisor.price_sheet import load_sheet

    req = request().with_changes(prices=load_sheet(sheet))
    cost = plan_for(req).options[0].cost
    assert cost.price.usd == 1.5  # over the request's deployment price (PRICE)
    assert cost.price.source == f"{sheet} prices.h100-sxm-80gb (our quote, 2026-12-01)"
    owned = plan_for(req.with_changes(deployment=Request.from_dict(
        {**SIMPLE, "deployment": {"mode": "owned"}}).deployment)).options[0].cost
    assert owned.price.usd == 21000
    assert Request.from_dict(req.to_dict()).prices[H100].buy_usd == 21000  # saved plans


@pytest.mark.parametrize("sheet, message", [
    ({"h100-sxm-80gb": {"buy_usd": -3}}, "'prices.h100-sxm-80gb.buy_usd': expected a number > 0"),
    ({"h100-sxm-80gb": {"note": "x"}}, "expected buy_usd or cloud_usd_per_hour"),
    ({"h100-sxm-80gb": {"buy_usd": 1, "price": 2}}, "unknown field 'prices.h100-sxm-80gb.price'"),
    ({"h100-sxm-80gb": {"buy_usd": 1, "date": "yesterday"}}, "expected a date YYYY-MM-DD"),
    ({"h100-sxm-80gb": 1999}, "'prices.h100-sxm-80gb': expected a mapping"),
    ([1, 2], "field 'prices': expected a mapping of GPU id"),
])
def test_price_sheet_errors_name_the_field(sheet, message):
    with pytest.raises(AdvisorError, match=message.replace("(", r"\(")):
        Request.from_dict({**SIMPLE, "prices": sheet})


def test_price_sheet_with_an_unknown_gpu_is_refused():
    with pytest.raises(AdvisorError, match="prices.rtx4090: unknown GPU id 'rtx4090'"):
        plan_for(request(**{"prices": {"rtx4090": {"buy_usd": 1999}}}))


def test_owned_mode_prices_a_catalog_range_at_its_high_end():
    req = request(**{"deployment.mode": "owned"})  # the H100 has a catalog range, 25-30k USD
    price = plan_for(req).options[0].cost.price
    assert price.usd == 30_000
    assert price.source == ("catalog h100-sxm-80gb price range $25,000-$30,000 (street "
                               "price, 2023-08-16), high end used")
    assert any("a catalog price range at its high end" in a for a in plan_for(req).assumptions)
    own = request(**{"deployment.mode": "owned",
                     "deployment.owned.gpu_price_usd": {H100: 20_000.0}})
    assert plan_for(own).options[0].cost.price.usd == 20_000


def test_every_catalog_gpu_is_accounted_for_and_none_dropped_for_a_price():
    for mode in ("cloud", "owned"):
        plan = plan_for(full_catalog_request(**{"deployment.mode": mode}), top=60)
        listed = [x.gpu for part in (plan.options, plan.price_needed, plan.infeasible,
                                        plan.unfit, plan.excluded, plan.not_simulated)
                  for x in part]
        assert sorted(listed) == sorted(g.id for g in CATALOG.gpus)
        assert not any("price" in x.reason for x in plan.excluded)


def test_options_on_gpus_never_probed_carry_point_and_upper_bases_and_a_probe():
    transferred = FakeModels(CATALOG, transferred={H100})
    option = plan_for(request(**{"demand.images_per_s": 8.0}), models=transferred).options[0]
    bases = option.bases
    point, upper = bases.point, bases.upper
    assert point.total_gpus <= upper.total_gpus == option.fleet.total_gpus
    assert bases.settles_gpus == upper.total_gpus - point.total_gpus
    assert bases.settles_usd_per_month == pytest.approx(
        upper.usd_per_month - point.usd_per_month)
    assert bases.probe.command.startswith("advisor probe --grid data/grids/profile.yaml")
    probed = plan_for(request(**{"demand.images_per_s": 8.0})).options[0]
    assert probed.bases is None


def test_latency_basis_upper_sizes_on_the_interval():
    point = plan_for(request(**{"demand.images_per_s": 8.0})).options[0]
    upper = plan_for(request(**{"demand.images_per_s": 8.0,
                                "latency_basis": "upper"})).options[0]
    assert upper.latency.p95_s > point.latency.p95_s or \
        upper.fleet.serving_gpus > point.fleet.serving_gpus


def test_auto_basis_sizes_transferred_figures_on_their_upper_end():
    base = {"demand.images_per_s": 8.0}
    transferred = FakeModels(CATALOG, transferred={H100})
    auto = plan_for(request(**base), models=transferred).options[0]
    point = plan_for(request(**base, latency_basis="point"), models=transferred).options[0]
    upper = plan_for(request(**base, latency_basis="upper"), models=transferred).options[0]
    assert auto.service["1024x1024"].sized_on == "upper"
    assert point.service["1024x1024"].sized_on == "point"
    assert (auto.fleet, auto.latency) == (upper.fleet, upper.latency)
    assert auto.fleet.serving_gpus > point.fleet.serving_gpus
    # a probed GPU's fitted figures stay on their point under auto
    fitted = plan_for(request(**base)).options[0]
    assert fitted.service["1024x1024"].sized_on == "point"
    assert (fitted.fleet, fitted.latency) == (point.fleet, point.latency)
    assert any("the upper end of the 90% interval for transferred ones" in a
               for a in plan_for(request(**base)).assumptions)


def test_every_option_shows_utilization_headroom_and_evidence():
    plan = plan_for(full_catalog_request(), models=FakeModels(CATALOG, transferred={H100}))
    for o in plan.options:
        assert 0 < o.latency.utilization_at_peak <= 1
        assert o.slo_headroom == pytest.approx(1 - o.latency.p95_s / 8)
        assert o.evidence == ("transferred" if o.gpu == H100 else "fitted")
        assert o.accuracy.startswith(o.evidence + ": the 90% interval")
        assert o.reason  # every option says why, not only the top ones
        test = o.latency.short_test  # a short load test sees less of the long-run tail
        assert test.requests >= 20 and test.duration_s > 0
        assert test.range_s[0] < o.latency.p95_s <= 1.5 * test.range_s[1]


def option(gpu, usd, evidence):
    """A plan option whose cost and evidence are what the ranking reads."""
    return Option(gpu=gpu, gpu_name=gpu, setting=Setting(), max_batch=1, window_s=0.1,
                  fleet=Fleet(1, 0, 1, 1, ()), latency=PeakLatency(1.0, 1.0, 1.0, 0.0, 1.0, 0.5),
                  slo_headroom=0.5, capacity_img_per_s=1.0,
                  cost=FleetCost(usd, None, 0.0, None, 1, None), power_source="", service={},
                  sources=(evidence,), evidence=evidence, accuracy="", caveats=(),
                  model_version="")


def test_near_tie_rule_prefers_better_evidenced_figures():
    # a transferred option 1.5% cheaper than a fitted one, a measured one 3% above the cheapest
    ranked = rank_by_evidence([option("a", 1000, "transferred"), option("b", 1015, "fitted"),
                               option("c", 1030, "measured")])
    assert [o.gpu for o in ranked] == ["b", "a", "c"]
    assert ranked[0].near_tie == ("above a (at most 2% cheaper): its figures are fitted, "
                                     "theirs transferred")
    assert not ranked[1].near_tie and not ranked[2].near_tie
    # exactly 2% is a near-tie; just over it is not; equal evidence keeps the cost order
    assert [o.gpu for o in rank_by_evidence([option("a", 1000, "transferred"),
                                                option("b", 1020, "measured")])] == ["b", "a"]
    assert [o.gpu for o in rank_by_evidence([option("a", 1000, "transferred"),
                                                option("b", 1020.5, "measured")])] == ["a", "b"]
    assert [o.gpu for o in rank_by_evidence([option("a", 1000, "fitted"),
                                                option("b", 1001, "fitted")])] == ["a", "b"]


def test_near_tie_in_a_plan_is_stated_in_the_reason_and_assumptions():
    h200 = "h200-sxm-141gb"
    models = FakeModels(CATALOG, transferred={H100}, speed={h200: 1.0})
    base = {"candidates.gpus": [H100, h200], "deployment.cloud.usd_per_gpu_hour": {H100: PRICE},
            "latency_basis": "point", "demand.images_per_s": 4.0}
    first = {o.gpu: o.cost.usd_per_month
             for o in plan_for(request(**base), models=models).options}
    # price the H200 1% above the H100's monthly cost: the fitted H200 ranks first
    h200_price = CATALOG.get(h200).cloud_usd_per_hour * first[H100] / first[h200] * 1.01
    base["deployment.cloud.usd_per_gpu_hour"] = {H100: PRICE, h200: h200_price}
    plan = plan_for(request(**base), models=models)
    assert [o.gpu for o in plan.options] == [h200, H100]
    assert plan.options[0].cost.usd_per_month > plan.options[1].cost.usd_per_month
    assert "Ranked above h100-sxm-80gb (at most 2% cheaper)" in plan.options[0].reason
    assert any("within 2% of the cheapest one left" in a for a in plan.assumptions)


def test_caveats_for_unprobed_sizes_and_gpus_the_probe_cannot_drive():
    from advisor.contract import Config

    probed = [{"status": "ok", "config": Config(512, 512, batch=2).record()}]
    mi300x = "mi300x-192gb"
    plan = plan_for(request(**{"candidates.gpus": [mi300x],
                               "deployment.cloud.usd_per_gpu_hour": {mi300x: 2.0}}),
                    models=FakeModels(CATALOG, records=probed))
    notes = " ".join(plan.options[0].caveats)
    assert "extrapolated beyond the measurements: 1024x1024 is larger than the largest probed " \
           "image (512x512)" in notes
    assert "not runnable: the probe cannot drive the AMD Instinct MI300X" in notes


def test_setting_label():
    setting = Setting(precision="bf16", compile=True, attention="flash", offload="model")
    assert setting.label == "bf16 flash compile offload=model"


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def fake_models(monkeypatch):
    import advisor.cache

    monkeypatch.setattr(advisor.cache, "load_models", lambda *a, **k: FakeModels(CATALOG))


def test_cli_table_fits_100_columns(fake_models, capsys, tmp_path):
    assert main(["recommend", "--request", "examples/request.yaml", "--data", str(tmp_path),
                 "--gpus", "h100-sxm-80gb,l40s-48gb,a10-24gb,rtx-5080",
                 "--max-usd-per-month", "500000"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert " 1  " in out and "why: batch" in out and "Fits, but no fleet meets" in out
    lossy = out.split("Lossy precisions the request does not allow (settings.precisions), and "
                      "what each would change:\n")[1]
    assert lossy.startswith("  quality: lossy: ") and "\n  - fp8: " in lossy
    assert "  lossy alternatives: " in out  # the work it took, with the search's
    assert "rtx-5080: needs 22.6 GB" in out  # searched though no cloud rents it
    assert "Where the figures come from:" in out and "fake-law-1" in out


def test_cli_table_lists_options_beyond_top(fake_models, capsys, tmp_path):
    gpus = "h100-sxm-80gb,h200-sxm-141gb,l40s-48gb"
    assert main(["recommend", "--request", "examples/request.yaml", "--data", str(tmp_path),
                 "--gpus", gpus, "--top", "1", "--format", "json"]) == 0
    options = json.loads(capsys.readouterr().out)["results"]["options"]
    assert len(options) > 1  # pruning may leave some GPUs unsimulated (listed apart)
    assert main(["recommend", "--request", "examples/request.yaml", "--data", str(tmp_path),
                 "--gpus", gpus, "--top", "1"]) == 0
    out = capsys.readouterr().out
    rest = ", ".join(f"{o['gpu']} {o['fleet']['total_gpus']} GPUs "
                     f"${o['cost']['usd_per_month']:,.0f}/month" for o in options[1:])
    assert f"Also meeting the request (ranked, cheapest option of each GPU):\n  {rest}" in out
    assert out.count("why: ") == 1
    lo, hi = options[0]["latency"]["short_test"]["range_s"]
    assert f"measures {lo:.2f}-{hi:.2f} s in 90% of runs" in " ".join(out.split())


def test_cli_flags_override_and_json(fake_models, capsys, tmp_path):
    assert main(["recommend", "--resolution", "1024x1024:0.7", "--resolution", "512x512:0.3",
                 "--images-per-s", "3", "--p99-s", "9", "--gpus", H100, "--no-n-plus-one",
                 "--format", "json", "--data", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    req = doc["inputs"]["request"]
    assert req["slo"] == {"p99_s": 9.0} and req["demand"]["images_per_s"] == 3.0
    assert [r["share"] for r in req["resolutions"]] == [0.7, 0.3]
    assert doc["results"]["options"][0]["gpu"] == H100
    assert main(["recommend", "--images-per-s", "3", "--p99-s", "9", "--gpus", H100,
                 "--precisions", "bf16,int8-wo", "--format", "json", "--data", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["inputs"]["request"]["settings"]["precisions"] == ["bf16", "int8-wo"]
    assert [a["precision"] for a in doc["results"]["lossy_alternatives"]] == ["fp8", "fp8-wo"]


def test_cli_bad_input_exits_2_with_the_field(fake_models, capsys, tmp_path):
    assert main(["recommend", "--images-per-s", "3", "--p95-s", "-1",
                 "--data", str(tmp_path)]) == 2
    assert "field 'slo.p95_s': expected a number > 0" in capsys.readouterr().err
    assert main(["recommend", "--resolution", "big", "--images-per-s", "1", "--p95-s", "5",
                 "--data", str(tmp_path)]) == 2
    assert "--resolution 'big': expected WIDTHxHEIGHT[:SHARE]" in capsys.readouterr().err


def test_unfit_without_offload_in_the_search_says_so():
    req = request(**{"candidates.gpus": ["rtx-5080"],
                     "deployment.cloud.usd_per_gpu_hour": {"rtx-5080": 0.5}})
    (unfit,) = plan_for(req).unfit
    assert unfit.reason.endswith("has 17.2 GB; offload not searched (settings.offload)")


def test_cli_prices_flag_turns_a_price_needed_gpu_into_an_option(fake_models, capsys, tmp_path):
    args = ["recommend", "--request", "examples/request.yaml", "--data", str(tmp_path),
            "--gpus", "h100-sxm-80gb,h800-sxm-80gb", "--top", "5", "--format", "json"]
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [o["gpu"] for o in results["price_needed"]] == ["h800-sxm-80gb"]
    sheet = tmp_path / "prices.yaml"
    sheet.write_text("prices:\n  h800-sxm-80gb: {cloud_usd_per_hour: 0.5, note: our quote}\n")
    assert main(args + ["--prices", str(sheet)]) == 0
    doc = json.loads(capsys.readouterr().out)
    [h800] = [o for o in doc["results"]["options"] if o["gpu"] == "h800-sxm-80gb"]
    assert h800["cost"]["price"] == {"usd": 0.5, "unit": "usd_per_gpu_hour",
                                     "source": f"{sheet} prices.h800-sxm-80gb (our quote)"}
    assert doc["inputs"]["request"]["prices"]["h800-sxm-80gb"]["cloud_usd_per_hour"] == 0.5
    assert not doc["results"]["price_needed"]
    sheet.write_text("prices: {h800-sxm-80gb: {cloud_usd_per_hour: free}}\n")
    assert main(args + ["--prices", str(sheet)]) == 2
    assert "prices.h800-sxm-80gb.cloud_usd_per_hour': expected a number" in \
        capsys.readouterr().err
