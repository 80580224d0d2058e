"""The Plan page's request form: widget values to a validated Request and back, and requests
loaded from an uploaded request file or saved plan."""
from __future__ import annotations

import pandas as pd

from advisor.app.uploads import as_temp_file, parse_yaml_mapping, upload_text
from advisor.errors import AdvisorError

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
        "latency_basis": form["latency_basis"],
        "deployment": {
            "mode": form["mode"], "gpus_per_server": form["gpus_per_server"],
            "cloud": {"usd_per_gpu_hour": _prices(form["cloud_prices"])},
            "owned": {"gpu_price_usd": _prices(form["gpu_prices"]),
                      "server_usd": form["server_usd"],
                      "amortization_years": form["amortization_years"],
                      "usd_per_kwh": form["usd_per_kwh"]},
        },
        "prices": form.get("price_sheet") or {},
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
        "resolutions": [{"width": r.width, "height": r.height, "share_pct": 100 * r.share}
                        for r in request.resolutions],
        "demand": request.images_per_s * (86_400 if per_day else 1),
        "demand_unit": "images/day" if per_day else "images/s",
        "peak_factor": request.peak_factor,
        "slo_quantile": request.slo_label, "slo_s": request.slo_s,
        "gpus": list(request.gpus or []), "segments": list(request.segments or []),
        "precisions": list(request.precisions), "batches": list(request.batches),
        "compile": list(request.compile), "attention": list(request.attention),
        "offload": list(request.offload), "latency_basis": request.latency_basis,
        "mode": d.mode, "gpus_per_server": d.gpus_per_server,
        "cloud_prices": [{"gpu": g, "price": p} for g, p in d.usd_per_gpu_hour.items()],
        "gpu_prices": [{"gpu": g, "price": p} for g, p in d.gpu_price_usd.items()],
        "price_sheet": {g: {k: v for k, v in p.to_dict().items() if v is not None}
                        for g, p in request.prices.items()},
        "server_usd": d.server_usd, "amortization_years": d.amortization_years,
        "usd_per_kwh": d.usd_per_kwh, "max_gpus": request.max_gpus,
        "n_plus_one": request.n_plus_one,
    }


def price_sheet_from_upload(name: str, data: bytes) -> dict:
    """An uploaded price sheet (YAML, `prices:` of GPU id to buy_usd, cloud_usd_per_hour, date,
    note), checked, as the request's `prices` mapping."""
    from advisor.price_sheet import parse_sheet

    doc = parse_yaml_mapping(name, data)
    sheet = parse_sheet(doc.get("prices", doc) if isinstance(doc, dict) else doc, name)
    return {g: {k: v for k, v in p.to_dict().items() if v is not None} for g, p in sheet.items()}


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
