"""The GPUs page: the catalog as a table, with one config predicted on every GPU."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from advisor.catalog import Catalog
from advisor.contract import QUANTIZATIONS, Config, with_precision
from advisor.search import not_offered


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
    """The catalog table plus, per GPU, the predicted fit and throughput of one config (a GPU
    that cannot run the precision, by its catalog entry, is not modelled at it: the note says
    why)."""
    config = Config(height=height, width=width, batch=batch, precision=precision)
    modelled = [g.id for g in catalog.gpus if not not_offered(g, precision)]
    preds = dict(zip(modelled, models.predict_many([(g, config) for g in modelled])))
    rows = []
    for gpu in catalog.gpus:
        p = preds.get(gpu.id)
        if p is None:
            rows.append({"fits": None, "note": f"not modelled at {precision}: "
                                               f"{not_offered(gpu, precision)}"})
            continue
        rows.append({"fits": p.fits, "img_per_s": p.images_per_s,
                     "latency_s": p.latency.total_s, "memory_needed_gb": p.memory.needed_gb,
                     "source": p.source, "note": p.fits_reason})
    return pd.concat([catalog_frame(catalog), pd.DataFrame(rows)], axis=1)


LIMIT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
LIMIT_SIDES = (512, 768, 1024, 1280, 1536, 2048, 3072, 4096)


def fit_limits(models, catalog: Catalog, precision: str = "bf16",
               offloads: tuple[str, ...] = ("none", "model", "sequential")) -> pd.DataFrame:
    """Per catalog GPU and offload setting: the largest batch of 1024x1024 images and the
    largest square image at batch 1 that fit (the one memory rule), each with where its
    figure comes from: a run measured on that GPU, a capped-measured minimum cap (any GPU:
    a property of shapes and software), or the fitted one. One predict_many for the table.
    A quantized precision has no offload rows: it is never run with offload."""
    gpus = [g for g in catalog.gpus if not not_offered(g, precision)]
    offloads = ("none",) if precision in QUANTIZATIONS else offloads
    configs = ([Config(1024, 1024, b) for b in LIMIT_BATCHES]
               + [Config(s, s, 1) for s in LIMIT_SIDES])
    queries = [(g.id, replace(with_precision(c, precision), offload=o))
               for g in gpus for o in offloads for c in configs]
    preds = iter(models.predict_many(queries))
    rows = []
    for gpu in gpus:
        for offload in offloads:
            found = [next(preds) for _ in configs]
            batches, sides = found[:len(LIMIT_BATCHES)], found[len(LIMIT_BATCHES):]
            rows.append({"gpu": gpu.id, "name": gpu.name, "capacity_gb": gpu.capacity_gb,
                         "offload": offload, **_largest("batch_1024", batches, "batch"),
                         **_largest("side_b1", sides, "width")})
    return pd.DataFrame(rows)


def _largest(name: str, preds: list, field: str) -> dict:
    """The largest fitting value of `field` among predictions ordered smallest first (fits
    shrinks with size, so the first misfit ends the run), and the source of its verdict."""
    best = None
    for p in preds:
        if not p.fits:
            break
        best = p
    if best is None:
        return {name: None, f"{name}_source": f"nothing fits: {preds[0].fits_reason}"}
    return {name: getattr(best.config, field), f"{name}_source": fit_source(best)}


def fit_source(pred) -> str:
    """Where a fits verdict comes from, in a word or two."""
    if pred.fits_reason.startswith("measured"):
        return "measured run"
    return pred.memory.min_cap_source.split(" (")[0].split(":")[0]
