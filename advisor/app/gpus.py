"""The GPUs page: the catalog as a table, with one config predicted on every GPU."""
from __future__ import annotations

import pandas as pd

from advisor.catalog import Catalog
from advisor.contract import Config


def catalog_frame(catalog: Catalog) -> pd.DataFrame:
    """One row per catalog GPU with its spec-derived figures."""
    rows = [
        {
            "id": g.id, "name": g.name, "vendor": g.vendor, "architecture": g.architecture,
            "segment": g.segment, "memory_gb": g.memory_gb,
            "bandwidth_gbps": g.memory_bandwidth_gbps, "bf16_tflops": g.dense_tflops("bf16"),
            "fp8_tflops": g.dense_tflops("fp8"), "tdp_w": g.tdp_w,
            "price_usd_low": (g.purchase_range_usd or (None, None))[0],
            "price_usd_high": (g.purchase_range_usd or (None, None))[1],
            "price_kind": g.price_kind, "cloud_usd_per_hour": g.cloud_usd_per_hour,
            "runnable": g.runnable,
        }
        for g in catalog.gpus
    ]
    return pd.DataFrame(rows)


def catalog_predictions(models, catalog: Catalog, height: int, width: int, batch: int = 1,
                        precision: str = "bf16") -> pd.DataFrame:
    """The catalog table plus, per GPU, the predicted fit and throughput of one config (GPUs
    without a dense rate at the precision cannot be modelled at it: said in the note)."""
    config = Config(height=height, width=width, batch=batch, precision=precision)
    modelled = [g.id for g in catalog.gpus if g.dense_tflops(precision)]
    preds = dict(zip(modelled, models.predict_many([(g, config) for g in modelled])))
    rows = []
    for gpu in catalog.gpus:
        p = preds.get(gpu.id)
        if p is None:
            rows.append({"fits": None, "note": f"no dense {precision} rate in the catalog: not "
                                               "modelled at this precision"})
            continue
        rows.append({"fits": p.fits, "img_per_s": p.images_per_s,
                     "latency_s": p.latency.total_s, "memory_needed_gb": p.memory.needed_gb,
                     "source": p.source, "note": p.fits_reason})
    return pd.concat([catalog_frame(catalog), pd.DataFrame(rows)], axis=1)
