"""The Check a claim page: a claims.check_claim result's arithmetic as tables."""
from __future__ import annotations

import re

import pandas as pd


def claim_tables(result: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the compute arithmetic, the memory options) of a claims.check_claim result. The compute
    table says where each figure comes from in a few words; `claim_sources` says it whole."""
    a, c = result["arithmetic"], result["claim"]
    per_image = a["tflops_per_image"]
    compute = pd.DataFrame([
        *({"quantity": f"TFLOP per image: {stage.replace('_', ' ')}", "value": value,
           "from": "analytic FLOP count"} for stage, value in per_image.items()),
        {"quantity": "claimed images per second", "value": c["images_per_second"],
         "from": "the claim"},
        {"quantity": "implied TFLOP/s (TFLOP per image × images/s)", "value": a["implied_tflops"],
         "from": "arithmetic"},
        {"quantity": f"dense {a['peak_precision']} peak TFLOP/s", "value": a["peak_tflops"],
         "from": "GPU catalog"},
        {"quantity": "implied MFU (implied / peak)", "value": a["mfu"], "from": "arithmetic"},
        {"quantity": "MFU ceiling", "value": a["mfu_ceiling"], "from": "measured MFU ceiling"},
    ])
    memory = pd.DataFrame([
        {"weights": o["precision"], "offload": o["offload"], "resident_gb": o["resident_gb"],
         "memory_budget_gb": a["memory_budget_gb"],
         "transfer_s_per_batch": o["transfer_s_per_batch"],
         "claimed_s_per_batch": c["seconds_per_batch"]}
        for o in a["memory_options"]])
    return compute, memory


def claim_sources(result: dict) -> str:
    """The compute table's sources in full, as markdown (file paths and field names as code)."""
    return "\n".join(f"- **{label}**: " + CODE_WORD.sub(r"`\1`", text) for label, text in (
        ("analytic FLOP count", result["sources"]["flops"]),
        ("GPU catalog", result["sources"]["peak"]),
        ("measured MFU ceiling", result["arithmetic"]["mfu_ceiling_source"])))


CODE_WORD = re.compile(r"(?<![\w`])([\w.:-]*[_/][\w./:-]*[\w/])")  # a path or a field name
