"""Data for the dashboard: uploads parsed as data only, and plot-ready tables.

No streamlit here: the pages in app_pages/ cache and draw what these functions return, and the
tests call them directly. Uploads are size-checked, decoded as UTF-8 and parsed with
yaml.safe_load or JSON (through advisor.records); nothing is unpickled or executed.
"""
from __future__ import annotations

import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import yaml

from advisor import MEASUREMENTS_DIR
from advisor.catalog import Catalog
from advisor.errors import AdvisorError
from advisor.records import read_records

MAX_UPLOAD_MB = 20

# --------------------------------------------------------------------------- uploads


def upload_text(name: str, data: bytes, max_mb: float = MAX_UPLOAD_MB) -> str:
    """The upload as text; AdvisorError if it is too large, empty or not UTF-8."""
    if len(data) > max_mb * 1e6:
        raise AdvisorError(f"{name}: {len(data) / 1e6:.1f} MB is over the {max_mb:g} MB limit")
    if not data.strip():
        raise AdvisorError(f"{name}: the file is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdvisorError(
            f"{name}: not UTF-8 text (byte {exc.start}); expected YAML or JSON lines"
        ) from None


def parse_yaml_mapping(name: str, data: bytes) -> dict:
    """A YAML upload, safely loaded; it must be a mapping."""
    try:
        doc = yaml.safe_load(upload_text(name, data))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", exc)
        raise AdvisorError(f"{name}: {where}invalid YAML ({problem})") from None
    if not isinstance(doc, dict):
        raise AdvisorError(
            f"{name}: expected a YAML mapping at the top, found {type(doc).__name__}")
    return doc


def _safe_name(name: str, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".") or "upload"
    return stem if stem.endswith(suffix) else stem + suffix


@contextmanager
def as_temp_file(name: str, text: str, suffix: str):
    """The text written under a sanitized copy of `name` in a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="advisor-upload-") as tmp:
        path = Path(tmp) / _safe_name(name, suffix)
        path.write_text(text, encoding="utf-8")
        yield path


def parse_records_upload(name: str, data: bytes) -> tuple[list[dict], list[str]]:
    """Valid records of an uploaded JSON-lines probe file and its problems, each problem as
    "<upload name>:<line>: <what>"; `_source` of each record names the upload and line."""
    text = upload_text(name, data)
    with as_temp_file(name, text, ".jsonl") as path:
        records, problems = read_records(path)
    problems = [p.replace(str(path), name, 1) for p in problems]
    for record in records:
        record["_source"] = f"{name}:{record['_source'].rsplit(':', 1)[1]}"
    return records, problems


def valid_lines(text: str, records: list[dict]) -> str:
    """The upload with its invalid lines blanked: line numbers stay those of the user's file."""
    keep = {int(r["_source"].rsplit(":", 1)[1]) for r in records}
    lines = text.splitlines()
    return "\n".join(line if n in keep else "" for n, line in enumerate(lines, start=1)) + "\n"


# --------------------------------------------------------------------------- catalog


def catalog_frame(catalog: Catalog) -> pd.DataFrame:
    """One row per catalog GPU with its spec-derived figures."""
    rows = [
        {
            "id": g.id, "name": g.name, "vendor": g.vendor, "architecture": g.architecture,
            "segment": g.segment, "memory_gb": g.memory_gb,
            "bandwidth_gbps": g.memory_bandwidth_gbps, "bf16_tflops": g.dense_tflops("bf16"),
            "fp8_tflops": g.dense_tflops("fp8"), "tdp_w": g.tdp_w, "price_usd": g.price_usd,
            "cloud_usd_per_hour": g.cloud_usd_per_hour, "runnable": g.runnable,
        }
        for g in catalog.gpus
    ]
    return pd.DataFrame(rows)


def catalog_predictions(models, catalog: Catalog, height: int, width: int, batch: int = 1,
                        precision: str = "bf16") -> pd.DataFrame:
    """The catalog table plus, per GPU, the predicted fit and throughput of one config."""
    rows = []
    for gpu in catalog.gpus:
        try:
            p = models.predict(gpu.id, height, width, batch=batch, precision=precision)
        except AdvisorError as exc:
            rows.append({"fits": None, "note": str(exc)})
            continue
        rows.append({"fits": p["fits"], "img_per_s": p["images_per_s"],
                     "latency_s": p["latency_s"]["total"], "peak_memory_gb": p["peak_memory_gb"],
                     "source": p["source"], "note": p["fits_reason"]})
    return pd.concat([catalog_frame(catalog), pd.DataFrame(rows)], axis=1)


# --------------------------------------------------------------------------- measurements

GB_PER_MIB = 2**20 / 1e9  # records hold MiB; figures are shown in decimal GB, as the catalog
SETTING_FIELDS = ("precision", "attention", "compile", "offload")
SQUARE_SIDES = tuple(range(512, 2048 + 1, 128))
BATCHES = (1, 2, 3, 4, 6, 8, 12, 16)


def setting_label(precision: str, attention: str, compile: bool, offload: str) -> str:
    return (f"{precision} · {attention} attention · {'compiled' if compile else 'eager'} · "
            f"offload {offload}")


def shape_label(c: dict) -> str:
    """Short name of a probed shape: resolution × batch, with what differs from the defaults."""
    extras = [f"{c['steps']} steps" if c["steps"] != 9 else "",
              f"{c['caption_tokens']} tokens" if c["caption_tokens"] != 64 else "",
              "CFG" if c["guidance_scale"] > 0 else ""]
    return " ".join([f"{c['height']}x{c['width']} ×{c['batch']}", *filter(None, extras)])


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: where it came from, its config and its key results."""
    rows = []
    for r in records:
        c, res = r["config"], r.get("results") or {}
        rows.append({
            "source": r.get("_source", ""), "gpu": r["gpu"].get("catalog_id") or r["gpu"]["name"],
            "status": r["status"], "weights": r["weights"],
            **{k: c[k] for k in ("height", "width", "batch", "steps", *SETTING_FIELDS,
                                 "caption_tokens")},
            "cfg": c["guidance_scale"] > 0,
            "resolution": f"{c['height']}x{c['width']}",
            "megapixels": c["height"] * c["width"] / 1e6, "config": shape_label(c),
            "setting": setting_label(*(c[k] for k in SETTING_FIELDS)),
            "latency_s": res.get("total_s"), "img_per_s": res.get("img_per_s"),
            "peak_memory_gb": _scaled(res.get("nvml_peak_used_mb"), GB_PER_MIB),
            "achieved_tflops": res.get("achieved_tflops"), "mfu_pct": _scaled(res.get("mfu"), 100),
            "gpu_util_pct": res.get("gpu_util_pct"), "power_w": res.get("power_w"),
        })
    return pd.DataFrame(rows)


def _scaled(value, factor):
    return None if value is None else value * factor


def curve_configs(axis: str, gpu: str, setting: dict, height: int, width: int,
                  batch: int) -> list[dict]:
    """Configs along one Explore axis: square resolutions at `batch`, or batches at HxW."""
    if axis == "resolution":
        return [dict(gpu_id=gpu, height=s, width=s, batch=batch, **setting) for s in SQUARE_SIDES]
    return [dict(gpu_id=gpu, height=height, width=width, batch=b, **setting) for b in BATCHES]


def measured_setting(frame: pd.DataFrame, gpu: str, setting: dict) -> pd.DataFrame:
    """The records of one GPU and setting, smallest work first."""
    keep = frame.gpu == gpu
    for key, value in setting.items():
        keep &= frame[key] == value
    return frame[keep].sort_values(["megapixels", "batch", "config"])


def measured_along(frame: pd.DataFrame, axis: str, gpu: str, setting: dict, height: int,
                   width: int, batch: int) -> pd.DataFrame:
    """Records on one Explore axis: same GPU and setting, default steps/caption, no CFG."""
    f = measured_setting(frame, gpu, setting)
    keep = ~f.cfg & (f.steps == 9) & (f.caption_tokens == 64)
    if axis == "resolution":
        keep &= f.batch == batch
    else:
        keep &= (f.height == height) & (f.width == width)
    return f[keep]


def predicted_frame(models, configs: list[dict]) -> pd.DataFrame:
    """Models.predict_many as a table: figures, their intervals and where each came from."""
    rows = []
    for c, p in zip(configs, models.predict_many(configs)):
        rows.append({
            "resolution": f"{c['height']}x{c['width']}",
            "megapixels": c["height"] * c["width"] / 1e6,
            "batch": c["batch"], "latency_s": p["latency_s"]["total"],
            "latency_lo_s": p["latency_interval_s"][0], "latency_hi_s": p["latency_interval_s"][1],
            "img_per_s": p["images_per_s"], "peak_memory_gb": p["peak_memory_gb"],
            "memory_lo_gb": p["memory_interval_gb"][0], "memory_hi_gb": p["memory_interval_gb"][1],
            "capacity_gb": p["memory_capacity_gb"], "fits": p["fits"],
            "achieved_tflops": p["achieved_tflops"], "mfu_pct": 100 * p["mfu"],
            "source": p["source"], "source_detail": p["source_detail"],
            "interval_basis": p["interval_basis"]["latency"],
        })
    return pd.DataFrame(rows)


def model_row(predicted: pd.DataFrame) -> pd.Series:
    """The first model-made (not measured) row of a predicted frame: what the curve rests on."""
    made = predicted[predicted.source != "measured"]
    return (made if len(made) else predicted).iloc[0]


# --------------------------------------------------------------------------- validation


def validation_frames(report: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics per split and target, residual per held-out point) of Models.validation."""
    metrics = [
        {"split": split, "target": target, **{k: m.get(k) for k in
                                               ("mape", "median_ape", "max_ape", "coverage", "n")}}
        for split, targets in report["metrics"].items()
        for target, m in targets.items() if isinstance(m, dict) and "mape" in m
    ]
    return pd.DataFrame(metrics), pd.DataFrame(report["residuals"])


# --------------------------------------------------------------------------- your data


def fit_with_uploads(uploads: dict[str, str], measurements_dir: Path = MEASUREMENTS_DIR):
    """Models fitted on the shipped measurements plus uploaded JSON-lines texts.

    The files are copied into a temporary folder (uploads under an `upload-` prefix, so they
    never replace a shipped file); advisor.fit caches the fit by content, as for shipped data.
    """
    from advisor.fit import load_models

    with tempfile.TemporaryDirectory(prefix="advisor-data-") as tmp:
        folder = Path(tmp)
        for path in sorted(Path(measurements_dir).glob("*.jsonl")):
            (folder / path.name).write_bytes(path.read_bytes())
        for name, text in uploads.items():
            (folder / ("upload-" + _safe_name(name, ".jsonl"))).write_text(text, encoding="utf-8")
        models = load_models(folder)
    temp = re.compile(re.escape(str(Path(tempfile.gettempdir()) / "advisor-data-")) + r"[^/]+/")
    models.problems = [temp.sub("", p) for p in models.problems]
    return models


def record_gpu_id(record: dict, catalog: Catalog) -> str | None:
    """Catalog id of a record's GPU: its catalog_id, else the entry matching its NVML name."""
    gpu = record["gpu"]
    if gpu.get("catalog_id") in catalog.ids():
        return gpu["catalog_id"]
    match = catalog.match_nvml(gpu["name"], gpu["memory_mb"] * GB_PER_MIB)
    return match.id if match else None


def compare_frame(records: list[dict], models, catalog: Catalog) -> pd.DataFrame:
    """Uploaded ok records beside what the (shipped) models predicted for them, with the error."""
    from advisor.features import record_config

    ok = [r for r in records if r["status"] == "ok" and record_gpu_id(r, catalog)]
    configs = [{"gpu_id": record_gpu_id(r, catalog), **record_config(r)} for r in ok]
    frame = records_frame(ok)
    if not ok:
        return frame
    predicted = models.predict_many(configs)
    frame["gpu"] = [c["gpu_id"] for c in configs]
    frame["predicted_latency_s"] = [p["latency_s"]["total"] for p in predicted]
    frame["predicted_source"] = [p["source"] for p in predicted]
    error = frame.predicted_latency_s - frame.latency_s
    frame["latency_error_pct"] = 100 * error / frame.latency_s
    frame["predicted_memory_gb"] = [p["peak_memory_gb"] for p in predicted]
    return frame


# --------------------------------------------------------------------------- plan request form

DEMAND_UNITS = {"images/s": 1, "images/min": 60, "images/hour": 3600, "images/day": 86_400}


def request_from_form(form: dict, base: dict | None = None):
    """A validated Request from the Plan page's widget values (a plain dict) laid over `base`
    (a loaded request's file mapping: fields the form does not show are kept); AdvisorError
    naming the field when a value is out of range."""
    from advisor.request import Request

    return Request.from_dict(_merged(base or {}, request_dict(form)), source="the form")


def _merged(base: dict, over: dict) -> dict:
    """`over` laid on `base`, section by section; demand and SLO are replaced whole (each is
    given one way only)."""
    out = dict(base)
    for key, value in over.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        if nested and key not in ("demand", "slo"):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def request_dict(form: dict) -> dict:
    """The request file mapping for the Plan page's widget values."""
    per_s = form["demand"] / DEMAND_UNITS[form["demand_unit"]]
    demand = ({"images_per_day": form["demand"]} if form["demand_unit"] == "images/day"
              else {"images_per_s": per_s})
    resolutions = [_resolution(i, r) for i, r in enumerate(form["resolutions"], start=1)]
    return {
        "resolutions": resolutions,
        "demand": {**demand, "peak_factor": form["peak_factor"]},
        "slo": {f"{form['slo_quantile']}_s": form["slo_s"]},
        "candidates": {"gpus": form["gpus"] or "all",
                       **({"segments": form["segments"]} if form["segments"] else {})},
        "settings": {"precisions": form["precisions"], "batches": form["batches"],
                     "compile": form["compile"], "attention": form["attention"],
                     "offload": form["offload"]},
        "latency_basis": "upper" if form["pessimistic"] else "point",
        "deployment": {
            "mode": form["mode"], "gpus_per_server": form["gpus_per_server"],
            "cloud": {"usd_per_gpu_hour": _prices(form["cloud_prices"])},
            "owned": {"gpu_price_usd": _prices(form["gpu_prices"]),
                      "server_usd": form["server_usd"],
                      "amortization_years": form["amortization_years"],
                      "usd_per_kwh": form["usd_per_kwh"]},
        },
        "constraints": {"max_gpus": form["max_gpus"], "n_plus_one": form["n_plus_one"]},
    }


def _resolution(row_number: int, row: dict) -> dict:
    values = [row.get(k) for k in ("height", "width", "share_pct")]
    if any(v is None for v in values):
        raise AdvisorError(f"resolution mix, row {row_number}: height, width and share % are "
                           "all needed")
    height, width, share_pct = values
    return {"height": int(height), "width": int(width), "share": float(share_pct) / 100}


def _prices(rows: list[dict]) -> dict:
    return {r["gpu"]: float(r["price"]) for r in rows
            if r.get("gpu") and r.get("price") is not None}


def editor_rows(frame: pd.DataFrame) -> list[dict]:
    """A data editor's rows as dicts, rows left wholly empty dropped."""
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in frame.dropna(how="all").to_dict("records")]


def form_from_request(request) -> dict:
    """The Plan page's widget values for a Request (inverse of request_dict, for uploads)."""
    d = request.deployment
    per_day = request.demand_unit == "images_per_day"
    return {
        "resolutions": [{"height": r.height, "width": r.width, "share_pct": 100 * r.share}
                        for r in request.resolutions],
        "demand": request.images_per_s * (86_400 if per_day else 1),
        "demand_unit": "images/day" if per_day else "images/s",
        "peak_factor": request.peak_factor,
        "slo_quantile": request.slo_label, "slo_s": request.slo_s,
        "gpus": list(request.gpus or []), "segments": list(request.segments or []),
        "precisions": list(request.precisions), "batches": list(request.batches),
        "compile": list(request.compile), "attention": list(request.attention),
        "offload": list(request.offload), "pessimistic": request.latency_basis == "upper",
        "mode": d.mode, "gpus_per_server": d.gpus_per_server,
        "cloud_prices": [{"gpu": g, "price": p} for g, p in d.usd_per_gpu_hour.items()],
        "gpu_prices": [{"gpu": g, "price": p} for g, p in d.gpu_price_usd.items()],
        "server_usd": d.server_usd, "amortization_years": d.amortization_years,
        "usd_per_kwh": d.usd_per_kwh, "max_gpus": request.max_gpus,
        "n_plus_one": request.n_plus_one,
    }


def request_from_upload(name: str, data: bytes):
    """The Request in an uploaded request file or saved plan (YAML, safely loaded)."""
    from advisor.export import PLAN_KIND, load_plan
    from advisor.request import Request

    doc = parse_yaml_mapping(name, data)
    if doc.get("kind") != PLAN_KIND:
        return Request.from_dict(doc, source=name)
    with as_temp_file(name, upload_text(name, data), ".yaml") as path:
        try:
            return load_plan(path)["request"]
        except AdvisorError as exc:
            raise AdvisorError(str(exc).replace(str(path), name)) from None


# --------------------------------------------------------------------------- plan results


def setting_text(setting: dict) -> str:
    return setting_label(**setting)


SOURCES_BY_SURENESS = ("measured", "fitted", "transferred")


def least_sure(sources: list[str]) -> str:
    """The least sure of an option's service-time sources: what its figures rest on."""
    return max(sources, key=SOURCES_BY_SURENESS.index)


NO_REASON = "beyond the planner's top picks: sized and priced, without a reason line"


def options_frame(options: list[dict], request) -> pd.DataFrame:
    """One row per plan option: what to buy, how many, what it costs, how fast, how sure."""
    q = f"{request.slo_label}_s"
    rows = [{
        "rank": o.get("rank"), "gpu": o["gpu"], "gpu_name": o["gpu_name"],
        "setting": setting_text(o["setting"]), "max_batch": o["max_batch"],
        "total_gpus": o["fleet"]["total_gpus"], "serving_gpus": o["fleet"]["serving_gpus"],
        "servers": o["fleet"]["servers"], "usd_per_month": o["cost"]["usd_per_month"],
        "usd_per_1k_images": o["cost"]["usd_per_1k_images"], "capex_usd": o["cost"]["capex_usd"],
        "latency_s": o["latency"][q],
        "per_gpu_img_per_s": o["capacity_img_per_s"] / o["fleet"]["serving_gpus"],
        "sources": ", ".join(o["sources"]), "basis": least_sure(o["sources"]),
        "price_source": o["cost"]["price"]["source"],
        "reason": o.get("reason") or NO_REASON,
    } for o in options]
    return pd.DataFrame(rows)


def not_recommended_frame(plan) -> pd.DataFrame:
    """Every searched or excluded GPU without an option, with the reason."""
    rows = [{"gpu": g["gpu"], "verdict": verdict, "reason": g["reason"]}
            for verdict, items in (("cannot meet the request", plan.infeasible),
                                   ("does not fit in memory", plan.unfit),
                                   ("not searched", plan.excluded))
            for g in items]
    rows += [{"gpu": g["gpu"], "verdict": "not sized",
              "reason": f"costs at least ${g['usd_per_month_at_least']:,.0f}/month, more than "
                        "the options listed"} for g in plan.not_simulated]
    return pd.DataFrame(rows, columns=["gpu", "verdict", "reason"])


def headline(plan, models) -> dict:
    """The answer in plain words: what to buy, how many, what it costs, how sure we are."""
    r = plan.request
    best = plan.best()
    if best is None:
        return {"ok": False, "text": "No GPU in the search meets this request. The reasons per "
                "GPU are listed below: relax the SLO, lower the demand, allow more GPUs or add "
                "prices for the GPUs marked 'not searched'."}
    fleet, cost, q = best["fleet"], best["cost"], f"{r.slo_label}_s"
    verb = "Rent" if r.deployment.mode == "cloud" else "Buy"
    spare = f" ({fleet['serving_gpus']} serving + {fleet['spare_gpus']} spare)" \
        if fleet["spare_gpus"] else ""
    sources = best["sources"]
    detail = next(iter(best["service"].values()))["source_detail"]
    if "transferred" in sources:
        sure = ("Least sure: no measurements on this GPU; its speed is carried over from the "
                f"probed GPUs by its specs ({detail}). Probe one before buying many.")
    elif sources == ["measured"]:
        sure = f"Most sure: the service times are measured on this GPU ({detail})."
    else:
        sure = f"Fairly sure: fitted on measurements of this GPU ({detail})."
    return {
        "ok": True,
        "text": (f"{verb} **{fleet['total_gpus']} × {best['gpu_name']}**{spare} in "
                 f"{fleet['servers']} server(s) of {r.deployment.gpus_per_server}, run with "
                 f"{setting_text(best['setting'])}, batches up to {best['max_batch']}."),
        "usd_per_month": cost["usd_per_month"], "usd_per_1k_images": cost["usd_per_1k_images"],
        "capex_usd": cost["capex_usd"], "latency_s": best["latency"][q],
        "slo": f"{r.slo_label} ≤ {r.slo_s:g} s", "sure": sure, "sources": ", ".join(sources),
        "price_source": cost["price"]["source"], "model_version": best.get("model_version"),
    }


DEMAND_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def fleet_vs_demand(plan, models, catalog, top: int = 3,
                    factors: tuple[float, ...] = DEMAND_FACTORS) -> pd.DataFrame:
    """GPUs each of the top options needs as the demand scales (its GPU, setting and max
    batch fixed; the fleet re-sized by the planner at each demand)."""
    from advisor.plan import recommend

    rows = []
    for o in plan.options[:top]:
        s = o["setting"]
        fixed = plan.request.with_changes(
            gpus=(o["gpu"],), segments=None, precisions=(s["precision"],),
            compile=(s["compile"],), attention=(s["attention"],), offload=(s["offload"],),
            batches=tuple(b for b in plan.request.batches if b <= o["max_batch"]))
        for f in factors:
            best = recommend(fixed.with_changes(images_per_s=plan.request.images_per_s * f),
                             models, catalog, top=1).best()
            rows.append({"option": f"{o['gpu']} ({setting_text(s)}, batch ≤ {o['max_batch']}; "
                                   f"{least_sure(o['sources'])} times)",
                         "peak_img_per_s": plan.request.peak_images_per_s * f,
                         "total_gpus": best["fleet"]["total_gpus"] if best else None})
    return pd.DataFrame(rows)


PLANNER_FILES = ("plan.py", "queueing.py", "request.py", "export.py", "app_data.py")


def planner_key(catalog: Catalog) -> str:
    """Identity of the planning code and the catalog, for caching plans across restarts (the
    models' own version covers the measurements and the modelling code)."""
    import hashlib

    h = hashlib.sha256(catalog.sha256.encode())
    for name in PLANNER_FILES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def plan_yaml(plan, models, catalog, uploads: dict[str, str] | None = None) -> str:
    """The plan file (advisor.export) as text, for download; uploads in use are recorded in
    its provenance beside the shipped measurement files."""
    import hashlib

    from advisor.export import provenance, save_plan

    prov = provenance(models, catalog)
    if uploads:
        prov["uploads"] = [{"file": name, "sha256": hashlib.sha256(text.encode()).hexdigest()}
                           for name, text in sorted(uploads.items())]
    with tempfile.TemporaryDirectory(prefix="advisor-plan-") as tmp:
        path = Path(tmp) / "plan.yaml"
        save_plan(plan, path, prov)
        return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- claims


def claim_tables(result: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the compute arithmetic, the memory options) of a claims.check_claim result."""
    a, c = result["arithmetic"], result["claim"]
    per_image = a["tflops_per_image"]
    compute = pd.DataFrame([
        *({"quantity": f"TFLOP per image: {stage.replace('_', ' ')}", "value": value,
           "from": result["sources"]["flops"]} for stage, value in per_image.items()),
        {"quantity": "claimed images per second", "value": c["images_per_second"],
         "from": "the claim"},
        {"quantity": "implied TFLOP/s (TFLOP per image × images/s)", "value": a["implied_tflops"],
         "from": "arithmetic"},
        {"quantity": f"dense {a['peak_precision']} peak TFLOP/s", "value": a["peak_tflops"],
         "from": result["sources"]["peak"]},
        {"quantity": "implied MFU (implied / peak)", "value": a["mfu"], "from": "arithmetic"},
        {"quantity": "MFU ceiling", "value": a["mfu_ceiling"], "from": a["mfu_ceiling_source"]},
    ])
    memory = pd.DataFrame([
        {"weights": o["precision"], "offload": o["offload"], "resident_gb": o["resident_gb"],
         "memory_budget_gb": a["memory_budget_gb"],
         "transfer_s_per_batch": o["transfer_s_per_batch"],
         "claimed_s_per_batch": c["seconds_per_batch"]}
        for o in a["memory_options"]])
    return compute, memory
