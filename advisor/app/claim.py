"""The Check a claim page: a claims.check_claim result's arithmetic as tables."""
from __future__ import annotations

import pandas as pd


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
