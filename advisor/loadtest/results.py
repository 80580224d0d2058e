"""Load-test results files (`data/loadtests/<name>.json`): written atomically, read back checked.

The format is documented in data/loadtests/README.md. A bad file is an AdvisorError naming the
file and the field.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from advisor import REPO_ROOT
from advisor.errors import AdvisorError, describe
from advisor.fileio import write_user_file
from advisor.inputs import read_text
from advisor.loadtest.config import LoadConfig

LOADTESTS_DIR = REPO_ROOT / "data" / "loadtests"
KIND = "zimage-advisor-loadtest"
FORMAT = 1
MAX_BYTES = 50_000_000
TRACE_KEYS = ("arrival_s", "start_s", "finish_s", "predicted_finish_s", "batch", "batch_size",
              "resolution", "error")
PERCENTILES = ("p50_s", "p95_s", "p99_s")


def trace_block(trace, predicted_finish) -> dict:
    """The per-request lists of a results file; an endpoint's own timings as `server_<name>`."""
    return {"arrival_s": trace.arrival_s, "start_s": trace.start_s, "finish_s": trace.finish_s,
            "predicted_finish_s": predicted_finish, "batch": trace.batch,
            "batch_size": trace.batch_size, "resolution": trace.resolution,
            "error": trace.error, **{f"server_{k}": v for k, v in trace.server.items()}}


def trace_of(doc: dict):
    """A checked results file's per-request trace, samples and stop reason, as the live loop
    left them (GPU-busy time summed again over its batches; none for an HTTP run)."""
    from advisor.loadtest.run import Trace

    if not isinstance(doc.get("trace"), dict):
        raise AdvisorError(f"{doc.get('name', 'results')}: no per-request trace to analyse")
    t = {k: np.asarray([np.nan if v is None else v for v in doc["trace"][k]], dtype=float)
         for k in TRACE_KEYS}
    trace = Trace(t["arrival_s"], t["resolution"].astype(int), t["start_s"], t["finish_s"],
                  t["batch"].astype(int), t["batch_size"].astype(int), t["error"].astype(bool),
                  samples=list(doc.get("samples", [])))
    for key, values in doc["trace"].items():
        if key.startswith("server_"):
            trace.server[key[len("server_"):]] = np.asarray(
                [np.nan if v is None else v for v in values], dtype=float)
    m = doc["measured"]
    trace.errors, trace.stopped = list(m.get("errors", [])), m.get("stopped", "completed")
    trace.wall_s = m.get("wall_s") or 0.0
    if m.get("utilization") is None:
        trace.busy_s = None
    else:
        rows = trace.batch_rows(~np.isnan(trace.finish_s))
        trace.busy_s = float(np.sum(trace.finish_s[rows] - trace.start_s[rows]))
    return trace


def plain(obj):
    """JSON-ready: numpy to Python, NaN and infinities to null, floats rounded to microseconds."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return None if not math.isfinite(x) else round(x, 6)
    return obj


def save(doc: dict, path: str | Path) -> Path:
    path = Path(path)
    doc = plain({"kind": KIND, "format": FORMAT, **doc})
    problems = validate(doc)
    if problems:  # a writer bug, not a user error: never write a file the loader refuses
        raise AdvisorError(f"{path}: refusing to write an invalid results file: {problems[0]}")
    write_user_file(path, json.dumps(doc, indent=1) + "\n", "results file")
    return path


def load(path: str | Path) -> dict:
    path = Path(path)
    return parse(read_text(path, "load-test results", MAX_BYTES), str(path))


def parse(text: str, source: str) -> dict:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdvisorError(f"{source}: not JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise AdvisorError(f"{source}: nested deeper than a results file is") from None
    problems = validate(doc)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AdvisorError(f"{source}: {problems[0]}{more}")
    return doc


def load_dir(folder: str | Path = LOADTESTS_DIR) -> tuple[list[dict], list[str]]:
    """Every results file of a folder (sorted by name), and a problem line per bad one."""
    docs, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            doc = load(path)
        except AdvisorError as exc:
            problems.append(str(exc))
            continue
        doc["_source"] = path.name
        docs.append(doc)
    return docs, problems


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def validate(doc) -> list[str]:
    """Problems, each "field 'a.b': expected X, found Y"; empty when the file is good."""
    out: list[str] = []

    def bad(field: str, expected: str, found) -> None:
        out.append(f"field '{field}': expected {expected}, found {describe(found)}")

    def number(block: dict, prefix: str, key: str, nullable=False, low=None) -> None:
        v = block.get(key) if isinstance(block, dict) else None
        if v is None and nullable:
            return
        if not _number(v) or (low is not None and v < low):
            bad(f"{prefix}{key}", "a number" + (f" >= {low}" if low is not None else ""), v)

    if not isinstance(doc, dict):
        return [f"expected a JSON object (a load-test results file), found {describe(doc)}"]
    if doc.get("kind") != KIND:
        bad("kind", repr(KIND), doc.get("kind"))
    if doc.get("format") != FORMAT:
        bad("format", str(FORMAT), doc.get("format"))
    if not isinstance(doc.get("gpu"), str) or not doc.get("gpu"):
        bad("gpu", "the GPU's name or catalog id", doc.get("gpu"))
    config = doc.get("config")
    n_res = None
    if not isinstance(config, dict):
        bad("config", "a mapping (setting, max_batch, window_s, resolutions)", config)
    else:
        if not isinstance(config.get("setting"), dict):
            bad("config.setting", "a mapping (precision, attention, compile, offload)",
                config.get("setting"))
        mb = config.get("max_batch")
        if not isinstance(mb, int) or isinstance(mb, bool) or mb < 1:
            bad("config.max_batch", "an integer >= 1", mb)
        number(config, "config.", "window_s", low=0)
        res = config.get("resolutions")
        if not isinstance(res, list) or not res:
            bad("config.resolutions", "a list of {height, width, share}", res)
        else:
            for i, r in enumerate(res):
                if not isinstance(r, dict):
                    bad(f"config.resolutions[{i}]", "a mapping", r)
                    continue
                for key in ("height", "width", "share"):
                    number(r, f"config.resolutions[{i}].", key, low=0)
        if not out:  # the fields above hold: the whole config, checked as a run's
            try:
                n_res = len(LoadConfig.from_dict(config).resolutions)
            except AdvisorError as exc:
                out.append(str(exc))
    number(doc, "", "rate_per_s", low=0)
    number(doc, "", "duration_s", low=0)
    req = doc.get("requests")
    if not isinstance(req, int) or isinstance(req, bool) or req < 0:
        bad("requests", "an integer >= 0", req)
    m = doc.get("measured")
    if not isinstance(m, dict):
        bad("measured", "a mapping", m)
    else:
        for key in (*PERCENTILES, "throughput_img_per_s", "utilization"):
            number(m, "measured.", key, nullable=True, low=0)
        ci = m.get("p95_ci_s")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                                   and all(_number(x) for x in ci) and ci[0] <= ci[1]):
            bad("measured.p95_ci_s", "null or [low, high]", ci)
        for key in ("measured_requests", "served_requests", "error_requests"):
            if not _integer(m.get(key), 0):
                bad(f"measured.{key}", "an integer >= 0", m.get(key))
        number(m, "measured.", "wall_s", nullable=True, low=0)
        if not isinstance(m.get("stopped", ""), str):
            bad("measured.stopped", "text", m.get("stopped"))
        errors = m.get("errors", [])
        if not isinstance(errors, list) or not all(
                isinstance(e, dict) and isinstance(e.get("message"), str)
                and _integer(e.get("count"), 1) for e in errors):
            bad("measured.errors", "a list of {message, count}", errors)
        if doc.get("mode") == "soak":
            number(m, "measured.", "memory_slope_mb_per_h", nullable=True)
    for block, keys in (("predicted", PERCENTILES),
                        ("predicted_steady", (*PERCENTILES, "utilization"))):
        p = doc.get(block)
        if p is None:
            continue  # no fitted models for this GPU: measured only
        if not isinstance(p, dict):
            bad(block, "a mapping or null", p)
            continue
        for key in keys:
            number(p, f"{block}.", key, nullable=True, low=0)
    trace = doc.get("trace")
    if trace is not None:
        if not isinstance(trace, dict):
            bad("trace", "a mapping of per-request lists", trace)
        else:
            lengths = {k: len(v) for k, v in trace.items() if isinstance(v, list)}
            for key in TRACE_KEYS:
                if key not in lengths:
                    bad(f"trace.{key}", "a list", trace.get(key))
            if len(set(lengths.values())) > 1:
                out.append(f"field 'trace': lists of different lengths {lengths}")
            elif set(TRACE_KEYS) <= set(lengths):
                out += _trace_problems(trace, n_res)
    samples = doc.get("samples", [])
    if not isinstance(samples, list) or not all(
            isinstance(s, dict) and all(_number(v) or (v is None and k != "t_s")
                                        for k, v in s.items()) and _number(s.get("t_s"))
            for s in samples):
        bad("samples", "a list of {t_s, figures...} (numbers, null where not read)", samples)
    return out


# Each per-request list of a trace: what its items must be, and that check.
TRACE_ITEMS = {
    "arrival_s": ("numbers >= 0", lambda v, n: _number(v) and v >= 0),
    "start_s": ("numbers >= 0 or null", lambda v, n: v is None or _number(v) and v >= 0),
    "finish_s": ("numbers >= 0 or null", lambda v, n: v is None or _number(v) and v >= 0),
    "predicted_finish_s": ("numbers >= 0 or null",
                           lambda v, n: v is None or _number(v) and v >= 0),
    "batch": ("integers >= -1", lambda v, n: _integer(v, -1)),
    "batch_size": ("integers >= 0", lambda v, n: _integer(v, 0)),
    "resolution": ("indexes into config.resolutions",
                   lambda v, n: _integer(v, 0) and (n is None or v < n)),
    "error": ("true or false", lambda v, n: isinstance(v, bool)),
}


def _trace_problems(trace: dict, n_resolutions: int | None) -> list[str]:
    """The first bad item of each per-request list, named by list and index."""
    out = []
    for key, (expected, ok) in TRACE_ITEMS.items():
        for i, v in enumerate(trace[key]):
            if not ok(v, n_resolutions):
                out.append(f"field 'trace.{key}[{i}]': expected {expected}, found {describe(v)}")
                break
    return out
