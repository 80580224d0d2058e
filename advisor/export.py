"""Plan files: save a plan as YAML (inputs, assumptions, provenance, results), read it back, and
re-check a saved plan against the current catalog, measurements and fitted models.

Plan files are read with yaml.safe_load only, and the request inside is validated like any
request: a bad field is an AdvisorError naming the file and the field.
"""
from __future__ import annotations

import datetime as dt
import numbers
import platform
from dataclasses import fields
from importlib import metadata
from pathlib import Path

import yaml

from advisor import MEASUREMENTS_DIR, REPO_ROOT, __version__
from advisor.contract import (
    ATTENTIONS, COMPILE_MODES, OFFLOADS, PRECISIONS, QUANT_SCOPES, Setting,
)
from advisor.errors import AdvisorError, describe
from advisor.fileio import sha256_file, write_user_file
from advisor.inputs import load_yaml, read_text
from advisor.plan import Evaluation, Plan, evaluate, recommend
from advisor.request import Fields, Request

PLAN_FORMAT = 1
PLAN_KIND = "zimage-advisor-plan"
SOFTWARE = ("numpy", "scipy", "scikit-learn", "pyyaml")
SETTING_FIELDS = tuple(f.name for f in fields(Setting))


def provenance(models, catalog, measurements_dir: str | Path = MEASUREMENTS_DIR) -> dict:
    """Where every input came from: catalog and measurement files with their sha256, the
    model version and its validation error, and software versions."""
    files = sorted(Path(measurements_dir).glob("*.jsonl"))
    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "catalog": {"path": _shown(catalog.path), "sha256": catalog.sha256},
        "measurements": [{"file": _shown(f), "sha256": sha256_file(f)} for f in files],
        "model": {"version": models.model_version,
                  "validation": _plain(models.calibration or {}),
                  "validation_basis": "K-fold cross-validation error of the fitted models "
                                      "(mean absolute percentage error)"},
        "software": {"advisor": __version__, "python": platform.python_version(),
                     **{name: _version(name) for name in SOFTWARE}},
    }


def plan_document(plan: Plan, prov: dict) -> dict:
    return _plain({
        "format": PLAN_FORMAT,
        "kind": PLAN_KIND,
        "inputs": {"request": plan.request.to_dict()},
        "assumptions": plan.assumptions,
        "provenance": prov,
        "results": plan.results(),
    })


def save_plan(plan: Plan, path: str | Path, prov: dict) -> None:
    """Write the plan atomically: a crash leaves the old file or the new one, never half."""
    write_user_file(path, yaml.safe_dump(plan_document(plan, prov), sort_keys=False, width=100),
                    "plan file")


def load_plan(path: str | Path) -> dict:
    """The saved plan document, checked: format, kind, a valid request, and every field a plan
    check reads (each option's GPU, setting, max batch, fleet, latency and cost; provenance)
    checked like a request's."""
    path = Path(path)
    doc = load_yaml(read_text(path, "plan"), str(path))
    f = Fields(str(path))
    if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
        raise AdvisorError(f"{path}: field 'kind': expected {PLAN_KIND!r} (a file written by "
                           "`advisor recommend --out`)")
    if doc.get("format") != PLAN_FORMAT or isinstance(doc.get("format"), bool):
        raise f.error("format", f"{PLAN_FORMAT} (the plan format this advisor writes)",
                      describe(doc.get("format")))
    inputs = doc.get("inputs")
    if not isinstance(inputs, dict) or "request" not in inputs:
        raise AdvisorError(f"{path}: field 'inputs.request': expected the planning request")
    doc["request"] = Request.from_dict(inputs["request"], source=f"{path}: inputs.request")
    results = doc.get("results")
    if not isinstance(results, dict) or not isinstance(results.get("options"), list):
        raise AdvisorError(f"{path}: field 'results.options': expected a list of options")
    for i, option in enumerate(results["options"]):
        _check_option(f, f"results.options[{i}]", option, doc["request"])
    _check_provenance(f, doc.get("provenance"))
    return doc


def check_plan(path: str | Path, models, catalog,
               measurements_dir: str | Path = MEASUREMENTS_DIR) -> dict:
    """Re-validate a saved plan against current data. `holds` is False when its top option no
    longer fits, meets the SLO with the same fleet, or stays within the constraints."""
    doc = load_plan(path)
    request: Request = doc["request"]
    saved_prov = doc.get("provenance") or {}
    now_prov = provenance(models, catalog, measurements_dir)
    report = {"plan": str(path), "changes": _input_changes(saved_prov, now_prov),
              "holds": False, "problems": [], "option": None, "now": None}
    options = doc["results"]["options"]
    if not options:
        report["problems"].append("the saved plan has no option meeting its request")
    else:
        saved = options[0]
        report["option"] = _summary(saved)
        now = evaluate(request, models, catalog, saved["gpu"], Setting(**saved["setting"]),
                       saved["max_batch"], saved["fleet"]["serving_gpus"])
        report["now"] = now.as_dict()
        report["holds"] = now.holds
        report["problems"] += now.problems
        report["changes"] += _result_changes(saved, now, request)
    best = recommend(request, models, catalog, top=1, lossy=False).best()
    best = best.as_dict() if best else None
    report["best_now"] = _summary(best) if best else None
    if best and options and _summary(best) != report["option"]:
        report["changes"].append(
            f"the best option now is {_describe(best)} (saved: {_describe(options[0])})")
    return _plain(report)


# --------------------------------------------------------------------------- pieces


def _input_changes(saved: dict, now: dict) -> list[str]:
    out = []
    if (saved.get("catalog") or {}).get("sha256") != now["catalog"]["sha256"]:
        out.append(f"catalog {now['catalog']['path']} changed (sha256 "
                   f"{_short((saved.get('catalog') or {}).get('sha256'))} -> "
                   f"{_short(now['catalog']['sha256'])})")
    old = {m["file"]: m["sha256"] for m in saved.get("measurements") or []}
    new = {m["file"]: m["sha256"] for m in now["measurements"]}
    out += [f"measurement file added: {f}" for f in sorted(set(new) - set(old))]
    out += [f"measurement file removed: {f}" for f in sorted(set(old) - set(new))]
    out += [f"measurement file changed: {f}" for f in sorted(set(old) & set(new))
            if old[f] != new[f]]
    old_model = (saved.get("model") or {}).get("version")
    if old_model != now["model"]["version"]:
        out.append(f"fitted model version {old_model} -> {now['model']['version']}")
    return out


def _result_changes(saved: dict, now: Evaluation, request: Request) -> list[str]:
    """How the saved option's figures (from the plan file) changed under current data."""
    if now.latency is None:
        return []
    key = request.slo_key
    out = []
    before, after = saved["latency"][key], now.latency.at(key)
    if abs(after - before) > 0.005 * max(before, 1e-9):
        out.append(f"{request.slo_label} with {saved['fleet']['serving_gpus']} GPUs: "
                   f"{before:.2f} s -> {after:.2f} s")
    cost_before, cost_after = saved["cost"]["usd_per_month"], now.cost.usd_per_month
    if abs(cost_after - cost_before) > 0.005 * max(cost_before, 1e-9):
        out.append(f"monthly cost ${cost_before:,.0f} -> ${cost_after:,.0f} "
                   f"({now.cost.price.source})")
    return out


def _check_option(f: Fields, where: str, option, request: Request) -> None:
    """AdvisorError naming the field unless `option` has what a plan check reads: a GPU id, a
    setting, a max batch among the request's batch sizes, a fleet within its max_gpus, the SLO
    latency and the monthly cost."""
    if not isinstance(option, dict):
        raise f.error(where, "a mapping (one option of the plan)", describe(option))
    for key in ("gpu", "setting", "max_batch", "fleet", "latency", "cost"):
        if key not in option:
            raise f.error(f"{where}.{key}", "a value", "nothing (missing)")
    if not (isinstance(option["gpu"], str) and option["gpu"].strip()):
        raise f.error(f"{where}.gpu", "a catalog GPU id", describe(option["gpu"]))
    setting = _mapping(f, option, f"{where}.setting")
    f.keys(setting, f"{where}.setting", SETTING_FIELDS)
    for name, allowed in (("precision", PRECISIONS), ("attention", ATTENTIONS),
                          ("offload", OFFLOADS), ("quant_scope", QUANT_SCOPES),
                          ("compile_mode", COMPILE_MODES)):  # absent: a plan saved before it
        f.choice(setting, f"{where}.setting.{name}", allowed, default=getattr(Setting(), name))
    for name in ("compile", "vae_compile", "vae_channels_last"):
        f.boolean(setting, f"{where}.setting.{name}",
                  None if name == "compile" else getattr(Setting(), name))
    batch = option["max_batch"]
    if batch not in request.batches or isinstance(batch, bool):
        raise f.error(f"{where}.max_batch", "one of the request's batch sizes "
                      f"({', '.join(map(str, request.batches))})", describe(batch))
    f.integer(_mapping(f, option, f"{where}.fleet"), f"{where}.fleet.serving_gpus", low=1,
              high=request.max_gpus)
    f.number(_mapping(f, option, f"{where}.latency"), f"{where}.latency.{request.slo_key}",
             low=0.0, low_open=False)
    f.number(_mapping(f, option, f"{where}.cost"), f"{where}.cost.usd_per_month", low=0.0,
             low_open=False)


def _check_provenance(f: Fields, prov) -> None:
    """The saved provenance a plan check compares with today's: optional, but well formed."""
    if prov is None:
        return
    if not isinstance(prov, dict):
        raise f.error("provenance", "a mapping", describe(prov))
    for section, key in (("catalog", "sha256"), ("model", "version")):
        value = prov.get(section)
        if value is not None and not (isinstance(value, dict) and isinstance(
                value.get(key), (str, type(None)))):
            raise f.error(f"provenance.{section}", f"a mapping with a text '{key}'",
                          describe(value))
    files = prov.get("measurements") or []
    if not isinstance(files, list):
        raise f.error("provenance.measurements", "a list of {file, sha256}", describe(files))
    for i, item in enumerate(files):
        if not (isinstance(item, dict) and isinstance(item.get("file"), str)
                and isinstance(item.get("sha256"), str)):
            raise f.error(f"provenance.measurements[{i}]", "a mapping with text 'file' and "
                          "'sha256'", describe(item))


def _mapping(f: Fields, option: dict, path: str) -> dict:
    value = option[path.rsplit(".", 1)[-1]]
    if not isinstance(value, dict):
        raise f.error(path, "a mapping", describe(value))
    return value


def _summary(option: dict) -> dict:
    """The option's identity; its setting whole (a plan saved before a setting existed holds
    that setting's default)."""
    return {"gpu": option["gpu"], "setting": Setting(**option["setting"]).as_dict(),
            "max_batch": option["max_batch"], "serving_gpus": option["fleet"]["serving_gpus"]}


def _describe(option: dict) -> str:
    s = option["setting"]
    return (f"{option['fleet']['serving_gpus']} x {option['gpu']} ({Setting(**s).label}, "
            f"batch {option['max_batch']})")


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"


def _shown(path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _plain(obj):
    """Plain Python containers and scalars (no numpy types, tuples as lists) for YAML/JSON."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    return str(obj)
