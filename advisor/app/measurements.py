"""Probe records as a table (Explore, Your data), the catalog GPU a record ran on, and the
records a fit skipped."""
from __future__ import annotations

from dataclasses import fields

import pandas as pd

from advisor.catalog import Catalog
from advisor.contract import Config, Setting

GB_PER_MIB = 2**20 / 1e9  # records hold MiB; figures are shown in decimal GB, as the catalog
MAX_PROBLEMS_SHOWN = 30  # skipped records listed on a page; the rest are counted
CONFIG_COLUMNS = ("height", "width", "batch", "steps", "caption_tokens",
                  *(f.name for f in fields(Setting)))


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: where it came from, its config and its key results."""
    rows = []
    for r in records:
        c, res = Config.from_record(r["config"]), r.get("results") or {}
        rows.append({
            "source": r.get("_source", ""), "gpu": r["gpu"].get("catalog_id") or r["gpu"]["name"],
            "status": r["status"], "weights": r["weights"],
            **{k: getattr(c, k) for k in CONFIG_COLUMNS}, "cfg": c.cfg,
            "resolution": c.shape_label(), "megapixels": c.pixels / 1e6, "config": c.label(),
            "setting": c.setting.label,
            "latency_s": res.get("total_s"), "img_per_s": res.get("img_per_s"),
            "peak_memory_gb": _scaled(res.get("nvml_peak_used_mb"), GB_PER_MIB),
            "achieved_tflops": res.get("achieved_tflops"), "mfu_pct": _scaled(res.get("mfu"), 100),
            "gpu_util_pct": res.get("gpu_util_pct"), "power_w": res.get("power_w"),
        })
    return pd.DataFrame(rows)


def _scaled(value, factor):
    return None if value is None else value * factor


def record_gpu_id(record: dict, catalog: Catalog) -> str | None:
    """Catalog id of a record's GPU: its catalog_id, else the entry matching its NVML name."""
    gpu = record["gpu"]
    if gpu.get("catalog_id") in catalog.ids():
        return gpu["catalog_id"]
    match = catalog.match_nvml(gpu["name"], gpu["memory_mb"] * GB_PER_MIB)
    return match.id if match else None


def problems_markdown(problems: list[str], limit: int = MAX_PROBLEMS_SHOWN) -> str:
    """Skipped records as a markdown list, each with its file and line (the first `limit`)."""
    lines = [f"- `{p}`" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"- … and {len(problems) - limit} more")
    return "\n".join(lines)
