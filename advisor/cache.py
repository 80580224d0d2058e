"""Fitted, calibrated models and their validation report, cached on disk: `load_models`,
`validation_of`.

The cache key hashes the whole `advisor` package source, the architecture configs, the catalog
and every measurement file, so no change to code or data can leave a stale fit in use. A cache
file is a snapshot (`advisor.snapshot`: numpy arrays plus JSON, read with `allow_pickle=False`)
of numpy-only objects of the classes listed in `CACHED_CLASSES`, so loading it needs no
scikit-learn and cannot run code, whoever wrote the file: the cache folder may be shared
(`ZIMAGE_ADVISOR_CACHE`) and its file names follow from public inputs. A damaged, crafted or
stale file is a miss: the models are refitted and the file replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from advisor import ARCH_DIR, CATALOG_PATH, MEASUREMENTS_DIR
from advisor import snapshot
from advisor.calibration import fit_calibrated
from advisor.contract import Config, Parallel
from advisor.coverage import Probed
from advisor.errors import AdvisorError
from advisor.features import GpuSpec, specs_of
from advisor.fileio import sha256_file, write_atomic
from advisor.grouped import GroupedLinear
from advisor.intervals import Intervals, MachineBand
from advisor.memory_rule import MeasuredRun
from advisor.models import Measured, Models
from advisor.predictors import LatencyPredictor, MemoryPredictor, MinCapPredictor
from advisor.published import PUBLISHED_PATH, load_published
from advisor.transfer import ClassTransfer

CACHE_ENV = "ZIMAGE_ADVISOR_CACHE"
CAPPED_DIR = "capped"  # under the measurements folder
CACHE_KEEP = 8  # model files kept per folder (one per code/data combination)
PACKAGE_DIR = Path(__file__).resolve().parent
MAX_CACHE_BYTES = 1 << 30  # a larger file in the cache folder is not ours: a miss
# The classes a cache file may hold; loading rebuilds these and nothing else.
CACHED_CLASSES = (Models, Measured, GpuSpec, LatencyPredictor, MemoryPredictor, MinCapPredictor,
                  GroupedLinear, MeasuredRun, Config, Parallel, Probed, Intervals, MachineBand,
                  ClassTransfer)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "zimage-advisor")


def cache_key(measurements_dir: Path, catalog_path: Path) -> str:
    """sha256 over the package source, the architecture configs, the catalog, the published
    points (they set transferred intervals) and the measurements."""
    h = hashlib.sha256()
    files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted(Path(ARCH_DIR).rglob("*.json"))
    for path in files:
        h.update(str(path.relative_to(path.parents[1])).encode() + path.read_bytes())
    h.update(sha256_file(catalog_path).encode() + sha256_file(PUBLISHED_PATH).encode())
    for path in sorted(measurements_dir.glob("*.jsonl")) + capped_files(measurements_dir):
        h.update(str(path.relative_to(measurements_dir)).encode() + sha256_file(path).encode())
    return h.hexdigest()


def load_models(measurements_dir: str | Path = MEASUREMENTS_DIR,
                catalog_path: str | Path = CATALOG_PATH, cache_dir: str | Path | None = None,
                refit: bool = False) -> Models:
    """Fitted, calibrated models for the measurements and catalog, from the cache when nothing
    changed."""
    measurements_dir, catalog_path = Path(measurements_dir), Path(catalog_path)
    if not measurements_dir.is_dir():
        what = "is a file, not a folder" if measurements_dir.exists() else "folder not found"
        raise AdvisorError(f"--data {measurements_dir}: measurements {what}")
    if not catalog_path.is_file():
        raise AdvisorError(f"--catalog {catalog_path}: catalog file not found")
    key = cache_key(measurements_dir, catalog_path)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"models-{key[:32]}.npz"
    if not refit:
        models = _load(path, key)
        if models is not None:
            models.cache_path = str(path)
            return models
    models = fit_from_files(measurements_dir, catalog_path, model_version=f"fit:{key[:12]}")
    models.cache_path = str(path)
    try:
        write_atomic(path, dumps(models))
        _prune(cache_dir)
    except OSError as exc:  # a read-only home must not stop predictions
        models.problems.append(f"{path}: model cache not written ({exc.strerror or exc})")
        models.cache_path = None
    return models


def fit_from_files(measurements_dir: Path, catalog_path: Path, model_version: str) -> Models:
    from advisor.catalog import load_catalog
    from advisor.records import load_measurements

    records, problems = load_measurements(measurements_dir)
    if not records:
        raise AdvisorError(f"{measurements_dir}: no usable measurement records (*.jsonl)"
                           + (f"; {len(problems)} invalid line(s), first: {problems[0]}"
                              if problems else ""))
    catalog = load_catalog(catalog_path)
    specs = specs_of(catalog.gpus)
    for record in records:  # records probed before the catalog knew the GPU: match by name
        gpu = record["gpu"]
        if gpu.get("catalog_id") not in specs:
            match = catalog.match_nvml(gpu["name"], gpu["memory_mb"] * 2**20 / 1e9)
            gpu["catalog_id"] = match.id if match else gpu.get("catalog_id")
    capped, capped_problems = (load_measurements(measurements_dir / CAPPED_DIR)
                               if capped_files(measurements_dir) else ([], []))
    return fit_calibrated(records, specs, problems + capped_problems,
                          model_version=model_version, capped=capped,
                          published=load_published())


def capped_files(measurements_dir: Path) -> list[Path]:
    """Records run under a memory cap (`advisor probe --min-cap` / `--memory-cap-gib`)."""
    return sorted((measurements_dir / CAPPED_DIR).glob("*.jsonl"))


def validation_of(models: Models, progress=None, workers: int = 1, recompute: bool = False,
                  compute: bool = True) -> dict | None:
    """The validation report of `models` (`advisor validate`): held-out accuracy of models
    fitted as these were. Kept beside the model cache once per model version; the shipped
    report (advisor.shipped) where it was computed from these exact inputs and code; else
    computed, with `progress` and `workers` as in advisor.validation.validation_report.
    `recompute` computes it whatever is kept or shipped; without `compute`, None where it
    would have to be computed.
    One process at a time computes it: the dashboard starts one in the background, and a
    page that needs the report meanwhile waits for that one instead of starting its own."""
    report = None if recompute else _kept(models)
    if report is not None or not compute:
        return report
    with _exclusive(Path(f"{models.cache_path}.validation.lock") if models.cache_path else None):
        # another process may have computed it meanwhile (the shipped file was read above)
        report = None if recompute else _cached(models)
        if report is None:
            from advisor.validation import validation_report

            report = validation_report(models.records, models.specs, fit_calibrated,
                                       models.problems, published=load_published(),
                                       capped=models.capped, progress=progress,
                                       workers=workers)
        return _keep(models, report)


@contextmanager
def _exclusive(path: Path | None):
    """An exclusive lock on `path` (flock) while the block runs; none without a path, on a
    system without flock, or where the lock file cannot be written."""
    try:
        import fcntl
        handle = open(path, "a") if path is not None else None
    except (ImportError, OSError):
        handle = None
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _kept(models: Models) -> dict | None:
    """The report kept beside the model cache for this model version, else the shipped one
    of these inputs and code (kept beside the cache from then on), else None."""
    from advisor.shipped import read_shipped, report_key

    report = _cached(models)
    if report is not None:
        return report
    shipped = read_shipped(report_key(models, load_published()))
    return None if shipped is None else _keep(models, shipped)


def _cached(models: Models) -> dict | None:
    """The report kept beside the model cache for this model version, or None."""
    path = _report_path(models)
    if path is None:
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None  # not computed yet, or damaged: compute it again
    if isinstance(report, dict) and report.get("model_version") == models.model_version:
        return report
    return None


def _keep(models: Models, report: dict) -> dict:
    """`report` of this model version, written beside the model cache where it can be."""
    text = json.dumps({**report, "model_version": models.model_version})
    path = _report_path(models)
    if path is not None:
        try:
            write_atomic(path, text)
        except OSError as exc:
            models.problems.append(f"{path}: validation report not cached "
                                   f"({exc.strerror or exc})")
    return json.loads(text)  # the same plain form whether computed now or read back


def _report_path(models: Models) -> Path | None:
    return Path(f"{models.cache_path}.validation.json") if models.cache_path else None


def dumps(models: Models) -> bytes:
    """The cache file's bytes: the models without the indexes their queries build lazily."""
    return snapshot.dumps(replace(models, cache_path=None, _by_setting=None, _grid_totals=None,
                                  _widths=None),
                          CACHED_CLASSES)


def loads(data: bytes, key: str) -> Models | None:
    """The models of a cache file made for `key`, or None for any other content."""
    try:
        models = snapshot.loads(data, CACHED_CLASSES)
    except snapshot.SnapshotError:
        return None
    if not isinstance(models, Models) or not isinstance(models.model_version, str) \
            or not models.model_version.endswith(key[:12]):
        return None
    return models


def _load(path: Path, key: str) -> Models | None:
    """The cached models, or None: a missing, unreadable, oversized, damaged, crafted or stale
    file is refitted, never trusted."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_CACHE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return loads(data, key)


def _prune(cache_dir: Path) -> None:
    files = sorted(cache_dir.glob("models-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in files[CACHE_KEEP:]:
        stale.unlink(missing_ok=True)
        Path(f"{stale}.validation.json").unlink(missing_ok=True)
