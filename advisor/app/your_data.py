"""The Your data page: uploaded records beside the shipped models' predictions, and models
refitted with the uploads."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd

from advisor import MEASUREMENTS_DIR
from advisor.app.measurements import record_gpu_id, records_frame
from advisor.app.uploads import safe_name
from advisor.catalog import Catalog
from advisor.contract import Config
from advisor.records import is_single_gpu


def fit_with_uploads(uploads: dict[str, str], measurements_dir: Path = MEASUREMENTS_DIR):
    """Models fitted on the shipped measurements plus uploaded JSON-lines texts.

    The files are copied into a temporary folder (uploads under an `upload-` prefix, so they
    never replace a shipped file); advisor.cache caches the fit by content, as for shipped data.
    """
    from advisor.cache import load_models

    with tempfile.TemporaryDirectory(prefix="advisor-data-") as tmp:
        folder = Path(tmp)
        for path in sorted(Path(measurements_dir).glob("*.jsonl")):
            (folder / path.name).write_bytes(path.read_bytes())
        for name, text in uploads.items():
            (folder / ("upload-" + safe_name(name, ".jsonl"))).write_text(text, encoding="utf-8")
        models = load_models(folder)
    temp = re.compile(re.escape(str(Path(tempfile.gettempdir()) / "advisor-data-")) + r"[^/]+/")
    models.problems = [temp.sub("", p) for p in models.problems]
    return models


def compare_frame(records: list[dict], models, catalog: Catalog) -> pd.DataFrame:
    """Uploaded ok records beside what the (shipped) models predicted for them, with the error."""
    # several-GPU records are no figure of one GPU: nothing single-GPU to compare them with
    ok = [r for r in records
          if r["status"] == "ok" and is_single_gpu(r) and record_gpu_id(r, catalog)]
    frame = records_frame(ok)
    if not ok:
        return frame
    queries = [(record_gpu_id(r, catalog), Config.from_record(r["config"])) for r in ok]
    predicted = models.predict_many(queries)
    frame["gpu"] = [gpu for gpu, _ in queries]
    frame["predicted_latency_s"] = [p.latency.total_s for p in predicted]
    frame["predicted_source"] = [p.source for p in predicted]
    error = frame.predicted_latency_s - frame.latency_s
    frame["latency_error_pct"] = 100 * error / frame.latency_s
    frame["predicted_memory_gb"] = [p.memory.nvml_gb for p in predicted]
    return frame
