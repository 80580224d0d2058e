"""Property-based tests of the parsers a user's files go through: requests, saved plans (and
their check), catalogs, measurement records, and the load test's flags, trace files and results
files. Any input gives a result or an AdvisorError,
never another exception, within a time bound (hypothesis' deadline) and a memory bound.

Inputs are valid documents with parts replaced by arbitrary values (wrong types, huge or
non-finite numbers, nested containers, deletions), and arbitrary YAML text with anchors and
aliases. The runs are derandomized so CI sees the same examples every time.
"""
from __future__ import annotations

import copy
import json
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.catalog import load_catalog
from advisor.errors import AdvisorError
from advisor.export import check_plan, plan_document, provenance
from advisor.inputs import load_yaml
from advisor.plan import recommend
from advisor.records import read_records, validate_record
from advisor.request import Request
from tests.fake_models import FakeModels
from tests.synthetic import make_record

CATALOG = load_catalog()
MODELS = FakeModels(CATALOG)
MAX_PEAK_MB = 64  # Python allocations while parsing one input
BOUNDED = settings(max_examples=40, deadline=3000, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

REQUEST = {
    "resolutions": [{"height": 1024, "width": 1024, "share": 0.7},
                    {"height": 768, "width": 1344, "share": 0.3}],
    "demand": {"images_per_s": 2.0, "peak_factor": 1.5},
    "slo": {"p95_s": 8.0},
    "candidates": {"gpus": ["h100-sxm-80gb", "l40s-48gb"]},
    "settings": {"precisions": ["bf16"], "batches": [1, 2, 4], "compile": [False],
                 "attention": ["native"], "offload": ["none"]},
    "deployment": {"mode": "cloud", "cloud": {"usd_per_gpu_hour": {"h100-sxm-80gb": 3.0}}},
    "constraints": {"max_gpus": 64, "n_plus_one": True},
}

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.sampled_from([10**400, -(10**400), 2**64, 0, -1, 1e308]),
                    st.text(max_size=12), st.dates())
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=10)
YAML_TEXT = st.lists(st.sampled_from(
    ["a: ", "&x ", "*x", "[", "]", "{", "}", ", ", "- ", "\n", "  ", "1e30", "'1'", "null",
     "demand: ", "slo: {p95_s: 3}", "images_per_s: 2", "!!int ", "<<: *x", "? ", ": ", "#",
     "9" * 30, "2026-13-40", "~", "\t", "&y [*x, *x, *x]", "[*y, *y, *y, *y]"]),
    max_size=40).map("".join)


def paths(doc, prefix=()):
    """Every path to a value in a document of dicts and lists."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in items:
        yield from paths(value, prefix + (key,))


@st.composite
def mutated(draw, base: dict, max_changes: int = 3):
    """`base` with up to `max_changes` values replaced by arbitrary ones or deleted."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_changes))):
        path = draw(st.sampled_from(list(paths(doc))[1:]))
        *parents, leaf = path
        node = doc
        for key in parents:
            node = node[key]
        if isinstance(node, dict) and draw(st.booleans()) and draw(st.booleans()):
            del node[leaf]
        else:
            node[leaf] = draw(VALUES)
    return doc


def result_or_advisor_error(parse, *args):
    """parse(*args), or None when it raised AdvisorError; any other exception fails the test,
    and so does a peak of more than MAX_PEAK_MB."""
    tracemalloc.start()
    try:
        return parse(*args)
    except AdvisorError as exc:
        assert len(str(exc)) < 100_000
        return None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MAX_PEAK_MB * 1e6, f"{peak / 1e6:.0f} MB"


def written(text: str, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="advisor-property-"))
    path = folder / f"input{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- requests


@BOUNDED
@given(mutated(REQUEST))
def test_any_request_mapping_gives_a_request_or_an_advisor_error(doc):
    request = result_or_advisor_error(Request.from_dict, doc)
    assert request is None or isinstance(request, Request)


@BOUNDED
@given(YAML_TEXT)
def test_any_yaml_text_gives_data_or_an_advisor_error(text):
    result_or_advisor_error(load_yaml, text, "input.yaml")
    result_or_advisor_error(Request.from_yaml, written(text, ".yaml"))


# A plan sizes every GPU the request names, priced or not: seconds on a 2-core machine, so its
# time bound is wider than the parsers'.
@settings(BOUNDED, max_examples=15, deadline=20_000)
@given(mutated(REQUEST))
def test_a_valid_mutated_request_plans_or_says_why(doc):
    request = result_or_advisor_error(Request.from_dict, doc)
    if request is not None:
        result_or_advisor_error(recommend, request, MODELS, CATALOG)


# --------------------------------------------------------------------------- plans

PLAN = plan_document(recommend(Request.from_dict(REQUEST), MODELS, CATALOG, top=2),
                     provenance(MODELS, CATALOG))


@settings(BOUNDED, max_examples=30)
@given(mutated(PLAN))
def test_any_plan_file_checks_or_gives_an_advisor_error(doc):
    text = result_or_advisor_error(yaml.safe_dump, doc)
    report = result_or_advisor_error(check_plan, written(text, ".yaml"), MODELS, CATALOG)
    assert report is None or isinstance(report["holds"], bool)


# --------------------------------------------------------------------------- catalogs

CATALOG_DOC = {"version": 1, "gpus": [g.to_dict() for g in CATALOG.gpus
                                      if g.id in ("h100-sxm-80gb", "rtx-4090")]}


@BOUNDED
@given(mutated(CATALOG_DOC))
def test_any_catalog_loads_or_gives_an_advisor_error(doc):
    text = result_or_advisor_error(yaml.safe_dump, doc)
    catalog = result_or_advisor_error(load_catalog, written(text, ".yaml"))
    assert catalog is None or len(catalog.gpus) == 2


# --------------------------------------------------------------------------- records

RECORD = make_record()


@BOUNDED
@given(mutated(RECORD), st.text(max_size=40))
def test_any_record_line_is_read_or_reported(record, junk):
    assert isinstance(validate_record(record), list)
    lines = [json.dumps(record, default=str), junk, json.dumps(RECORD)]
    records, problems = result_or_advisor_error(read_records,
                                                written("\n".join(lines), ".jsonl"))
    assert len(records) + len(problems) >= 1 and all(":" in p for p in problems)


# --------------------------------------------------------------------------- load tests

FLAG_VALUES = st.one_of(st.floats(), st.integers(-(2**70), 2**70),
                        st.sampled_from([0, 1, -1, 1e308, 5e-324, 10**400, True, None]))
LOADTEST_FIELDS = ("max_batch", "window_s", "rate_per_s", "duration_s", "warmup_s", "limit_s",
                   "max_requests", "seed", "steps", "caption_tokens", "replicas")
# Text near what the loadtest's parsers take: addresses, resolutions, JSON bodies
NEAR_TEXT = st.lists(st.sampled_from(
    ["http://", "https://", "[", "]", "::1", ":", "8000", "99999", "/", "x", "1024", "16",
     "0", ":0.5", "nan", "inf", "-", "e", "{", "}", '"a"', ",", "[1]", "\x1b", " ", "\n", "%",
     "9" * 20, "@", "?q=", "#"]), max_size=30).map("".join)


@BOUNDED
@given(st.dictionaries(st.sampled_from(LOADTEST_FIELDS), FLAG_VALUES, max_size=4),
       st.lists(st.tuples(st.integers(-16, 10**6), st.integers(-16, 10**6), FLAG_VALUES),
                min_size=0, max_size=3))
def test_any_load_test_config_is_made_or_refused_and_schedules_stay_bounded(fields, mix):
    from advisor.loadtest.arrivals import poisson
    from advisor.loadtest.config import LoadConfig, Resolution

    resolutions = tuple(Resolution(h, w, s) for h, w, s in mix) or (Resolution(512, 512, 1.0),)
    fields.setdefault("rate_per_s", 5.0)
    fields.setdefault("max_requests", 10**4)
    if isinstance(fields["max_requests"], int) and fields["max_requests"] > 10**4:
        fields["max_requests"] = 10**4  # a valid bound, kept small for the time bound
    config = result_or_advisor_error(lambda: LoadConfig(resolutions=resolutions, **fields))
    if config is not None:
        schedule = result_or_advisor_error(poisson, config)
        assert len(schedule) <= config.max_requests
        assert np.isfinite(schedule.times_s).all()


@BOUNDED
@given(NEAR_TEXT)
def test_any_loadtest_text_flag_is_taken_or_refused(text):
    from advisor.loadtest.config import parse_resolution
    from advisor.loadtest.run import check_url, parse_body

    for parse in (check_url, parse_body, parse_resolution):
        result_or_advisor_error(parse, text)


@BOUNDED
@given(st.recursive(st.one_of(st.integers(), st.text(max_size=4)),
                    lambda kids: st.one_of(st.lists(kids, max_size=2),
                                           st.dictionaries(st.text(max_size=3), kids,
                                                           max_size=2)),
                    max_leaves=60), st.integers(1, 3000))
def test_any_body_template_is_taken_or_refused_and_fills_in_bounded_time(body, nesting):
    from advisor.loadtest.run import fill_body, parse_body

    text = '{"a": ' * nesting + json.dumps(body) + "}" * nesting
    template = result_or_advisor_error(parse_body, text)
    if template is not None:
        fill_body(template, {"prompt": "p", "height": 16, "width": 16})


@BOUNDED
@given(st.lists(st.one_of(
    st.tuples(FLAG_VALUES, st.sampled_from(["512x512", "1024x768", "9" * 12 + "x16",
                                            "16x16", "x", ""])).map(
        lambda p: f"{p[0]} {p[1]}"),
    st.text(max_size=20)), max_size=30))
def test_any_trace_file_is_read_or_refused(lines):
    from advisor.loadtest.arrivals import read_trace, trace_resolutions

    read = result_or_advisor_error(read_trace, written("\n".join(lines), ".txt"), 1000)
    if read is not None:
        result_or_advisor_error(trace_resolutions, read[1])


def _loadtest_doc() -> dict:
    from advisor.commands.loadtest import summarize
    from advisor.loadtest import arrivals, results, run
    from advisor.loadtest.config import LoadConfig, Resolution

    config = LoadConfig(resolutions=(Resolution(512, 512, 1.0),), rate_per_s=10.0,
                        duration_s=1.0, warmup_s=0.2)
    clock = run.VirtualClock()
    trace = run.run_batches(arrivals.poisson(config), config,
                            run.FakeService({(512, 512): [0.05]}, clock), clock)
    doc = summarize(trace, config, len(trace.arrival_s), None, "endpoint", "http", {})
    return results.plain({"kind": results.KIND, "format": results.FORMAT, "name": "t", **doc})


LOADTEST_DOC = _loadtest_doc()


@settings(BOUNDED, max_examples=30)
@given(mutated(LOADTEST_DOC))
def test_any_results_file_reanalyzes_or_gives_an_advisor_error(doc):
    from advisor.commands.loadtest import summarize
    from advisor.loadtest import results
    from advisor.loadtest.config import LoadConfig

    text = json.dumps(doc, default=str)
    loaded = result_or_advisor_error(results.load, written(text, ".json"))
    if loaded is not None:
        def reanalyze():
            summarize(results.trace_of(loaded), LoadConfig.from_dict(loaded["config"]),
                      loaded["requests"], None, loaded["gpu"], "http", {})
        result_or_advisor_error(reanalyze)


@settings(BOUNDED, max_examples=20)
@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_every_request_sent_is_answered_or_counted_failed_and_ten_failures_stop(fails):
    from advisor.loadtest import run
    from advisor.loadtest.arrivals import Schedule
    from advisor.loadtest.config import LoadConfig, Resolution

    class Flaky:
        def __init__(self):
            self.calls = 0

        def request(self, height, width):
            self.calls += 1
            if fails[self.calls - 1]:
                raise ConnectionResetError("dropped")

    n = len(fails)
    config = LoadConfig(resolutions=(Resolution(512, 512, 1.0),), rate_per_s=1000.0,
                        duration_s=1.0, warmup_s=0.0)
    schedule = Schedule(np.arange(n) / 2000, np.zeros(n, dtype=int), "test")
    service = Flaky()
    trace = run.run_requests(schedule, config, service, max_inflight=1)
    sent = ~np.isnan(trace.start_s)
    assert sent.sum() == service.calls and (sent[:service.calls]).all()
    assert trace.error[sent].tolist() == fails[:service.calls]
    assert not np.isnan(trace.finish_s[sent]).any()
    run_of, stop = "".join("x" if f else "." for f in fails), "x" * run.STOP_AFTER_FAILURES
    if trace.stopped.startswith("endpoint failing"):  # only after a run of failures
        assert stop in run_of[:service.calls]
    if stop not in run_of:  # (with one, the last arrivals may be out before it is seen)
        assert trace.stopped == "completed" and service.calls == n
