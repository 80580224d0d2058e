"""The GPUs page: the catalog as a table, with one config predicted on every GPU."""
from __future__ import annotations

import re
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
            "price_kind": g.price_kind, "buy_usd": _price_range(g),
            "cloud_usd_per_hour": g.cloud_usd_per_hour,
            "runnable": g.runnable,
        }
        for g in catalog.gpus
    ]
    return pd.DataFrame(rows)


def shown_precision(gpu, precision: str) -> str | None:
    """The precision a GPU is shown at: the one asked for, else fp16 where bf16 is asked for
    and the card has no bf16 path (T4, V100: fp16 is what they run); None where it runs
    neither."""
    if not not_offered(gpu, precision):
        return precision
    return "fp16" if precision == "bf16" and not not_offered(gpu, "fp16") else None


def _price_range(gpu) -> str | None:
    """A purchase price as a person reads it: "$2,345 (list)", "$25,000-30,000 (street)"."""
    if not gpu.purchase_range_usd:
        return None
    low, high = gpu.purchase_range_usd
    price = f"${low:,.0f}" if low == high else f"${low:,.0f}-{high:,.0f}"
    return f"{price} ({gpu.price_kind})" if gpu.price_kind else price


def catalog_predictions(models, catalog: Catalog, height: int, width: int, batch: int = 1,
                        precision: str = "bf16") -> pd.DataFrame:
    """The catalog table plus, per GPU, the predicted fit and throughput of one config at the
    precision it is shown at (`shown_precision`): no throughput where the config does not fit,
    and a GPU that runs neither precision is not modelled; the note says why."""
    shown = {g.id: shown_precision(g, precision) for g in catalog.gpus}
    modelled = [g for g, p in shown.items() if p]
    preds = dict(zip(modelled, models.predict_many([
        (g, Config(height=height, width=width, batch=batch, precision=shown[g]))
        for g in modelled])))
    rows = []
    for gpu in catalog.gpus:
        p = preds.get(gpu.id)
        if p is None:
            rows.append({"fits": None, "note": f"not modelled at {precision}: "
                                               f"{not_offered(gpu, precision)}"})
            continue
        # a card the config does not fit has no speed to show: the note says why
        rows.append({"precision": shown[gpu.id], "fits": p.fits,
                     "img_per_s": p.images_per_s if p.fits else None,
                     "latency_s": p.latency.total_s if p.fits else None,
                     "memory_needed_gb": p.memory.needed_gb, "source": p.source,
                     "note": p.fits_reason if p.fits else f"does not fit: {p.fits_reason}"})
    return pd.concat([catalog_frame(catalog), pd.DataFrame(rows)], axis=1)


LIMIT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
LIMIT_SIDES = (512, 768, 1024, 1280, 1536, 2048, 3072, 4096)


def fit_limits(models, catalog: Catalog, precision: str = "bf16",
               offloads: tuple[str, ...] = ("none", "model", "sequential")) -> pd.DataFrame:
    """Per catalog GPU and offload setting, at the precision it is shown at
    (`shown_precision`): the largest batch of 1024x1024 images and the
    largest square image at batch 1 that fit (the one memory rule), each with where its
    figure comes from: a run measured on that GPU, a capped-measured minimum cap (any GPU:
    a property of shapes and software), or the fitted one. One predict_many for the table.
    A quantized precision has no offload rows: it is never run with offload."""
    shown = {g.id: shown_precision(g, precision) for g in catalog.gpus}
    gpus = [g for g in catalog.gpus if shown[g.id]]
    offloads = ("none",) if precision in QUANTIZATIONS else offloads
    configs = ([Config(1024, 1024, b) for b in LIMIT_BATCHES]
               + [Config(s, s, 1) for s in LIMIT_SIDES])
    queries = [(g.id, replace(with_precision(c, shown[g.id]), offload=o))
               for g in gpus for o in offloads for c in configs]
    preds = iter(models.predict_many(queries))
    rows = []
    for gpu in gpus:
        for offload in offloads:
            found = [next(preds) for _ in configs]
            batches, sides = found[:len(LIMIT_BATCHES)], found[len(LIMIT_BATCHES):]
            rows.append({"gpu": gpu.id, "name": gpu.name, "capacity_gb": gpu.capacity_gb,
                         "precision": shown[gpu.id], "offload": offload,
                         **_largest("batch_1024", batches, "batch"),
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
    if best is None:  # the reason without the rule's detail (the GPUs table gives it)
        reason = re.sub(r" \([^)]*\)", "", preds[0].fits_reason)
        return {name: None, f"{name}_source": f"nothing fits: {reason}"}
    return {name: getattr(best.config, field), f"{name}_source": fit_source(best)}


def fit_source(pred) -> str:
    """Where a fits verdict comes from, in a word or two."""
    if pred.fits_reason.startswith("measured"):
        return "measured run"
    return pred.memory.min_cap_source.split(" (")[0].split(":")[0]
