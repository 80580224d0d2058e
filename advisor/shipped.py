"""The validation report shipped beside the measurements (`SHIPPED_REPORT`), so that a first
`advisor validate` and the dashboard's Explore page show the shipped data's held-out accuracy
at once instead of refitting the models once per fold (about half a minute on two cores).

A report is used only for the exact inputs and code it was computed from: its key
(`report_key`) hashes what `advisor.validation.validation_report` is given (the records, the
capped records, the load problems, the GPU specs, the published points) and the source of
every module it runs (what advisor.validation and advisor.calibration import, transitively,
with the architecture configs the features read). A change to the data or to the model code
makes the shipped report a miss, computed again; `advisor validate --ship` writes a new one.
"""
from __future__ import annotations

import ast
import datetime
import gzip
import hashlib
import json
import os
import platform
import zlib
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from advisor import ARCH_DIR, DATA_DIR
from advisor.fileio import write_user_file

SHIPPED_REPORT = DATA_DIR / "validation" / "report.json.gz"
PACKAGE_DIR = Path(__file__).resolve().parent
# The modules a validation runs: the report, and the fit each fold makes (calibrated models).
REPORT_ROOTS = ("advisor.validation", "advisor.calibration")
MAX_REPORT_BYTES = 64 << 20  # decompressed: a larger file is not a report of ours


def report_key(models, published: list) -> str:
    """sha256 of what the validation report of `models` (with the `published` points) is
    computed from: its inputs and the source of the modules that compute it."""
    h = hashlib.sha256()
    for name, text in _report_sources():
        h.update(name.encode() + b"\0" + text + b"\0")
    inputs = [models.records, list(models.capped), list(models.problems),
              {gpu: asdict(spec) for gpu, spec in sorted(models.specs.items())},
              [asdict(p) for p in published]]
    h.update(json.dumps(inputs, sort_keys=True).encode())
    return h.hexdigest()


def report_modules() -> list[str]:
    """The package modules a validation runs: REPORT_ROOTS and what they import (at the top
    or inside functions), transitively."""
    todo, seen = list(REPORT_ROOTS), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imports(_module_path(name))
    return sorted(seen)


@lru_cache(maxsize=1)
def _report_sources() -> tuple[tuple[str, bytes], ...]:
    files = [_module_path(m) for m in report_modules()] + sorted(Path(ARCH_DIR).rglob("*.json"))
    return tuple((str(p.relative_to(p.parents[1])), p.read_bytes()) for p in files)


def _module_path(name: str) -> Path:
    parts = name.split(".")[1:]
    module = PACKAGE_DIR.joinpath(*parts).with_suffix(".py") if parts else None
    return module if module and module.is_file() else PACKAGE_DIR.joinpath(*parts, "__init__.py")


def _imports(path: Path) -> list[str]:
    """The package modules a module's source imports (a name imported from a package counts
    where it is a module of its own)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return [name for name in found if name.split(".")[0] == "advisor" and (
        name == "advisor" or _module_path(name).is_file())]


def read_shipped(key: str, path: Path | None = None) -> dict | None:
    """The shipped report (at `path`, default SHIPPED_REPORT) if it was computed for `key`,
    with `shipped` saying so; None for a missing, damaged or oversized file or one of other
    inputs or code."""
    path = Path(path or SHIPPED_REPORT)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_REPORT_BYTES + 1)
        doc = json.loads(data) if len(data) <= MAX_REPORT_BYTES else None
    except (OSError, EOFError, zlib.error, ValueError, RecursionError):
        return None
    if not (isinstance(doc, dict) and doc.get("key") == key
            and isinstance(doc.get("report"), dict) and isinstance(doc.get("computed"), dict)):
        return None
    computed = doc["computed"]
    return {**doc["report"], "shipped": (
        f"{_shown(path)}, computed {computed.get('date', '?')} for these exact data and model "
        "code")}


def write_shipped(report: dict, key: str, path: Path | None = None) -> Path:
    """Write `report` as the shipped report of `key` (at `path`, default SHIPPED_REPORT), with
    where and when it was computed, and return where (AdvisorError where it cannot be written;
    the old file is kept)."""
    import numpy
    import scipy
    import sklearn

    computed = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(), "numpy": numpy.__version__,
        "scipy": scipy.__version__, "scikit-learn": sklearn.__version__}
    body = {k: v for k, v in report.items() if k not in ("model_version", "shipped")}
    text = json.dumps({"key": key, "computed": computed, "report": body}, sort_keys=True)
    path = Path(path or SHIPPED_REPORT)
    write_user_file(path, gzip.compress(text.encode(), mtime=0), "shipped validation report")
    return path


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(DATA_DIR.parent))
    except ValueError:
        return str(path)
