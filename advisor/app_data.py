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
        raise AdvisorError(f"{name}: {where}invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(doc, dict):
        raise AdvisorError(f"{name}: expected a YAML mapping at the top, found {type(doc).__name__}")
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
            "megapixels": c["height"] * c["width"] / 1e6,
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


def measured_along(frame: pd.DataFrame, axis: str, gpu: str, setting: dict, height: int,
                   width: int, batch: int) -> pd.DataFrame:
    """Records on one Explore axis: same GPU and setting, default steps/caption, no CFG."""
    keep = (frame.gpu == gpu) & ~frame.cfg & (frame.steps == 9) & (frame.caption_tokens == 64)
    for key, value in setting.items():
        keep &= frame[key] == value
    if axis == "resolution":
        keep &= frame.batch == batch
    else:
        keep &= (frame.height == height) & (frame.width == width)
    return frame[keep]


def predicted_frame(models, configs: list[dict]) -> pd.DataFrame:
    """Models.predict_many as a table: figures, their intervals and where each came from."""
    rows = []
    for c, p in zip(configs, models.predict_many(configs)):
        rows.append({
            "resolution": f"{c['height']}x{c['width']}", "megapixels": c["height"] * c["width"] / 1e6,
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
    frame["latency_error_pct"] = 100 * (frame.predicted_latency_s - frame.latency_s) / frame.latency_s
    frame["predicted_memory_gb"] = [p["peak_memory_gb"] for p in predicted]
    return frame
