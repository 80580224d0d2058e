"""Measurement records: schema checks, reading, atomic appends, config identity.

The format is documented in data/measurements/README.md. The probe imports this module on the
GPU machine, so it needs nothing beyond the standard library and advisor.fileio.

Required `results` keys (status `ok`) are the ones the fit consumes: the stage times, the
composed total, throughput, repeats and the three memory peaks (null where the run could not
measure them, e.g. on CPU). Every other documented key is optional, and type-checked when present
(a number or null; `spread`/`stage_memory` objects, the `cap_trials` list); so are the optional
top-level keys `weights_source`, `architecture`, `grid`, `failed_stage` and `quantization`,
and the config fields added after the first records were shipped (`CONFIG_OPTIONAL`: absent
means the default).

Records of several GPUs (`config.parallel`, probes/replicas.py) are valid records, but no
single-GPU figure: `load_measurements` leaves them out unless asked (`single_gpu`), so the fit
never mistakes them for one GPU's.
"""
from __future__ import annotations

import json
import math
from statistics import median
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from advisor import MEASUREMENTS_DIR
from advisor.contract import (
    CHOICES,
    CONFIG_FIELDS,
    STAGES,
    STATUSES,
    WEIGHTS,
    Config,
    Parallel,
)
from advisor.errors import AdvisorError, shown
from advisor.fileio import append_line_atomic
from advisor.inputs import MAX_RECORDS_BYTES, check_file, is_number, read_text

SCHEMA_VERSION = 1

ARCHITECTURES = ("z-image-turbo", "tiny")  # tiny: test-sized dimensions, never a sizing figure

# Type tags: "int" excludes bool, "num" is int or float (not bool), "?" suffix allows null.
GPU_FIELDS = {
    "name": "str", "catalog_id": "str?", "memory_mb": "num", "driver": "str?", "cuda": "str?",
    "compute_capability": "str?", "power_limit_w": "num?",
}
HOST_FIELDS = {"cpu": "str?", "cpu_count": "int?", "ram_gb": "num?"}
# Which machine measured (added after the first shipped records, so optional): the GPU's NVML
# UUID and maximum clocks, a fingerprint of the host (a hash: no host name is stored) and, probed
# through Ray (probes.fleet), the node's Ray id.
MACHINE_FIELDS = {"gpu": {"uuid": "str?", "sm_clock_max_mhz": "num?",
                          "memory_clock_max_mhz": "num?"},
                  "host": {"fingerprint": "str?", "ray_node_id": "str?"}}
SOFTWARE_FIELDS = {"python": "str", "torch": "str?", "diffusers": "str?", "transformers": "str?"}
# `quantization`: what a quantized precision quantized (probes.quantize; absent otherwise).
RECORD_OPTIONAL = {"weights_source": "str?", "grid": "str?", "failed_stage": "str?",
                   "quantization": "dict?"}
# Where an oom/error record's run failed: loading the pipeline, or a stage of the call.
FAILED_STAGES = ("load",) + STAGES
# Config fields a record may lack (they came after the first shipped records), with the default
# an absent one means: an old record and a new config at that default are the same config.
SETTING_OPTIONAL = ("quant_scope", "compile_mode", "vae_compile", "vae_channels_last")
CONFIG_OPTIONAL = {f.name: f.default for f in fields(Config)
                   if f.name in ("vae", "memory_cap_gib", "parallel", *SETTING_OPTIONAL)}
CONFIG_REQUIRED = {k: tag for k, tag in CONFIG_FIELDS.items() if k not in CONFIG_OPTIONAL}
RESULTS_REQUIRED = {
    "text_encode_s": "num", "denoise_step_s": "num", "denoise_s": "num", "vae_decode_s": "num",
    "total_s": "num", "img_per_s": "num", "repeats": "int",
    "peak_allocated_mb": "num?", "peak_reserved_mb": "num?", "nvml_peak_used_mb": "num?",
}
RESULTS_OPTIONAL = {
    "denoise_first_step_s": "num?", "other_s": "num?", "measured_steps": "int?",
    "warmup_s": "num?", "end_to_end_s": "num?", "composition_error_pct": "num?", "nvml_baseline_mb": "num?",
    "gpu_util_pct": "num?", "power_w": "num?", "power_w_max": "num?", "sm_clock_mhz": "num?",
    "energy_j_per_image": "num?", "achieved_tflops": "num?", "mfu": "num?", "load_s": "num?",
    "host_rss_peak_mb": "num?", "compile_s": "num?", "spread": "dict?", "stage_memory": "dict?",
    "profile": "dict?",
    "min_cap_gib": "num?", "cap_trials": "list?",
    # several GPUs only (probes/replicas.py)
    "aggregate_img_per_s": "num?", "host_cpu_pct": "num?", "host_cpu_pct_max": "num?",
    "host_ram_used_mb": "num?", "together_s": "num?", "replicas": "list?",
    "parallel_library": "dict?", "communication_share": "num?",
}
# What a measured figure can physically be (a finite value outside is a corrupt or hand-made
# record: 1e-300 s would make a GPU infinitely fast in every fit and interval).
STAGE_TIMES = ("text_encode_s", "denoise_step_s", "denoise_s", "vae_decode_s", "total_s")
PLAUSIBLE = {
    **{key: (1e-6, 1e6, "seconds: a stage takes at least a microsecond, at most 11 days")
       for key in STAGE_TIMES},
    "img_per_s": (1e-9, 1e6, "images per second"),
    **{key: (0, 1e8, "MB: at most 100 TB") for key in (
        "peak_allocated_mb", "peak_reserved_mb", "nvml_peak_used_mb", "nvml_baseline_mb",
        "host_rss_peak_mb", "host_ram_used_mb")},
    "power_w": (0, 1e5, "watts"), "power_w_max": (0, 1e5, "watts"),
    "gpu_util_pct": (0, 100, "percent"), "mfu": (0, 1, "a fraction of the peak"),
}
# One GPU's figures in a record of several (`results.replicas`).
REPLICA_FIELDS = {"index": "int", "total_s": "num", "img_per_s": "num"}
# One trial of a minimum-cap search (`results.cap_trials`).
CAP_TRIAL_FIELDS = {"cap_gib": "num", "status": "str", "failed_stage": "str?"}
CAP_TRIAL_STATUSES = ("ok", "oom")


def _type_ok(value, tag: str) -> bool:
    if tag.endswith("?"):
        if value is None:
            return True
        tag = tag[:-1]
    if tag == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if tag == "num":  # finite: JSON's NaN and Infinity (or 1e400) would poison the fit
        return is_number(value)
    return isinstance(value, {"str": str, "bool": bool, "dict": dict, "list": list}[tag])


_TAG_WORDS = {"int": "an integer", "num": "a number", "str": "a string", "bool": "true/false",
              "dict": "an object", "list": "a list"}


def _choice(name: str, value, allowed: tuple) -> list[str]:
    """A problem when `value` is not one of `allowed`."""
    if value in allowed:
        return []
    return [f"{name}: expected one of {', '.join(map(str, allowed))}, got {shown(value)}"]


def _check_fields(obj: dict, fields: dict, where: str, required: bool = True) -> list[str]:
    problems = []
    for key, tag in fields.items():
        name = f"{where}.{key}" if where else key
        if key not in obj:
            if required:
                problems.append(f"{name}: missing")
            continue
        if not _type_ok(obj[key], tag):
            expected = _TAG_WORDS[tag.rstrip("?")] + (" or null" if tag.endswith("?") else "")
            problems.append(f"{name}: expected {expected}, got {shown(obj[key])}")
    return problems


def _check_config(config: dict) -> list[str]:
    problems = _check_fields(config, CONFIG_REQUIRED, "config")
    problems += _check_fields(config, {k: CONFIG_FIELDS[k] for k in CONFIG_OPTIONAL}, "config",
                              required=False)
    if problems:
        return problems
    config = {**CONFIG_OPTIONAL, **config}
    for key in ("height", "width"):
        if config[key] <= 0 or config[key] % 16:
            problems.append(f"config.{key}: expected a positive multiple of 16, got {config[key]}")
    for key in ("batch", "steps", "caption_tokens", "max_sequence_length"):
        if config[key] < 1:
            problems.append(f"config.{key}: expected >= 1, got {config[key]}")
    for key, allowed in CHOICES.items():
        problems += _choice(f"config.{key}", config[key], allowed)
    if config["memory_cap_gib"] is not None and config["memory_cap_gib"] <= 0:
        problems.append(f"config.memory_cap_gib: expected > 0 GiB or null, "
                        f"got {config['memory_cap_gib']}")
    if isinstance(config["parallel"], dict):
        problems += _check_parallel(config["parallel"])
    return problems


def _check_parallel(parallel: dict) -> list[str]:
    problems = _check_fields(parallel, {"mode": "str", "gpus": "int"}, "config.parallel")
    if not problems:
        problem = Parallel(parallel["mode"], parallel["gpus"]).problem()
        problems += [f"config.parallel.{problem}"] if problem else []
    return problems


def _check_results(results: dict) -> list[str]:
    problems = _check_fields(results, RESULTS_REQUIRED, "results")
    problems += _check_fields(results, RESULTS_OPTIONAL, "results", required=False)
    for key, (low, high, unit) in PLAUSIBLE.items():
        value = results.get(key)
        if value is not None and _type_ok(value, "num") and not low <= value <= high:
            problems.append(f"results.{key}: expected {low:g}..{high:g} ({unit}), got {value:g}")
    if isinstance(results.get("cap_trials"), list):
        problems += _check_cap_trials(results["cap_trials"])
    for index, replica in enumerate(results.get("replicas") or []):
        where = f"results.replicas[{index}]"
        problems += (_check_fields(replica, REPLICA_FIELDS, where) if isinstance(replica, dict)
                     else [f"{where}: expected an object, got {shown(replica)}"])
    return problems


def _check_cap_trials(trials: list) -> list[str]:
    problems = []
    for index, trial in enumerate(trials):
        where = f"results.cap_trials[{index}]"
        if not isinstance(trial, dict):
            problems.append(f"{where}: expected an object, got {shown(trial)}")
            continue
        found = _check_fields(trial, CAP_TRIAL_FIELDS, where)
        if not found:
            found += _choice(f"{where}.status", trial["status"], CAP_TRIAL_STATUSES)
            found += _choice(f"{where}.failed_stage", trial["failed_stage"], (None, *FAILED_STAGES))
        problems += found
    return problems


def validate_record(obj) -> list[str]:
    """Problems with one record (empty if valid). Unknown keys are allowed."""
    if not isinstance(obj, dict):
        return [f"expected a JSON object, got {type(obj).__name__}"]
    problems = []
    version = obj.get("schema_version")
    if not _type_ok(version, "int"):
        problems.append(f"schema_version: expected an integer, got {shown(version)}")
    elif version != SCHEMA_VERSION:
        problems.append(f"schema_version: this advisor reads {SCHEMA_VERSION}, got {version}")
    for key, allowed in (("status", STATUSES), ("weights", WEIGHTS)):
        if obj.get(key) not in allowed:
            problems.append(f"{key}: expected one of {', '.join(allowed)}, "
                            f"got {shown(obj.get(key))}")
    problems += _check_fields(obj, {"error": "str?", "timestamp": "str"}, "")
    problems += _check_fields(obj, RECORD_OPTIONAL, "", required=False)
    if "architecture" in obj and obj["architecture"] not in ARCHITECTURES:
        problems.append(f"architecture: expected one of {', '.join(ARCHITECTURES)}, "
                        f"got {shown(obj['architecture'])}")
    if obj.get("failed_stage") is not None:
        if obj.get("status") == "ok":
            problems.append(f"failed_stage: expected null when status is ok, "
                            f"got {shown(obj['failed_stage'])}")
        else:
            problems += _choice("failed_stage", obj["failed_stage"], FAILED_STAGES)
    if isinstance(obj.get("timestamp"), str):
        try:
            datetime.fromisoformat(obj["timestamp"])
        except ValueError:
            problems.append(f"timestamp: expected ISO 8601, got {shown(obj['timestamp'])}")
    for key, expected in (("gpu", GPU_FIELDS), ("host", HOST_FIELDS),
                          ("software", SOFTWARE_FIELDS), ("config", CONFIG_FIELDS)):
        section = obj.get(key)
        if not isinstance(section, dict):
            problems.append(f"{key}: expected an object, got {shown(section)}")
        elif key == "config":
            problems += _check_config(section)
        else:
            problems += _check_fields(section, expected, key)
            problems += _check_fields(section, MACHINE_FIELDS.get(key, {}), key, required=False)
    results = obj.get("results")
    if obj.get("status") == "ok":
        if not isinstance(results, dict):
            problems.append("results: expected an object when status is ok, "
                            f"got {shown(results)}")
        else:
            problems += _check_results(results)
    elif results is not None:
        problems.append(f"results: expected null when status is {shown(obj.get('status'))}")
    return problems


def read_records(path: str | Path) -> tuple[list[dict], list[str]]:
    """Valid records of one JSON-lines file, each with `_source` "<file name>:<line>", and the
    problems ("<file>:<line>: <what>") of the lines skipped. Blank lines are ignored."""
    path = Path(path)
    text = read_text(path, "measurement", MAX_RECORDS_BYTES)
    records, problems = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{lineno}: corrupt JSON ({exc.msg} at column {exc.colno})")
            continue
        errors = validate_record(obj)
        if errors:
            problems.append(f"{path}:{lineno}: " + "; ".join(errors))
            continue
        obj["_source"] = f"{path.name}:{lineno}"
        records.append(obj)
    return records, problems


def load_measurements(dir: str | Path = MEASUREMENTS_DIR,
                      single_gpu: bool = True) -> tuple[list[dict], list[str]]:
    """The valid records of `dir/*.jsonl` (sorted by file name) and the problems found; with
    `single_gpu` (what the fitted models read) only those of one GPU (`is_single_gpu`)."""
    records, problems = [], []
    for path in measurement_files(dir):
        file_records, file_problems = read_records(path)
        records += file_records
        problems += file_problems
    return [r for r in records if is_single_gpu(r) or not single_gpu], problems


def is_single_gpu(record: dict) -> bool:
    """Whether a (valid) record measured one GPU: no `config.parallel`, or mode `none`. The
    others (data-parallel replicas, one image split across GPUs) are no figure of one GPU."""
    return record["config"].get("parallel", {"mode": "none"})["mode"] == "none"


def measurement_files(dir: str | Path = MEASUREMENTS_DIR) -> list[Path]:
    """The `*.jsonl` files of a measurements folder, sorted; AdvisorError unless the folder
    exists and each is a regular file within MAX_RECORDS_BYTES (a link to /dev/zero or a named
    pipe would never finish reading)."""
    directory = Path(dir)
    if not directory.is_dir():
        what = "is a file, not a folder" if directory.exists() else "folder not found"
        raise AdvisorError(f"{directory}: measurements {what}")
    files = sorted(directory.glob("*.jsonl"))
    for path in files:
        check_file(path, "measurement", MAX_RECORDS_BYTES)
    return files


def append_record(path: str | Path, record: dict) -> None:
    """Validate `record` and append it as one line, atomically. Keys starting with "_" (reader
    annotations such as `_source`) are not written."""
    problems = validate_record(record)
    if problems:
        raise AdvisorError(f"{path}: refusing to append an invalid record: " + "; ".join(problems))
    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    append_line_atomic(path, json.dumps(clean, separators=(",", ":"), allow_nan=False))


def machine_of(record: dict) -> str | None:
    """Which machine measured: the GPU's NVML UUID (one physical GPU), else the host
    fingerprint, else None (records before either was kept). The UUID comes first because the
    fingerprint hashes what a container shows of its host, which is the same on every machine
    of one cloud image (eight H200s of 2026-12-02 share fingerprint cbc1f8b22885)."""
    return ((record.get("gpu") or {}).get("uuid")
            or (record.get("host") or {}).get("fingerprint"))


UNRECORDED_MACHINE = "not recorded (records before GPU UUIDs and host fingerprints)"


def machine_medians(records: list[dict]) -> dict[tuple, tuple[Config, dict[str, float]]]:
    """Per (GPU, config key) of the ok records: the config and each machine's median total
    (`machine_of`; records that name none count as one machine, UNRECORDED_MACHINE)."""
    totals: dict[tuple, dict[str, list[float]]] = {}
    configs: dict[tuple, Config] = {}
    for r in records:
        if r["status"] != "ok":
            continue
        key = (r["gpu"]["catalog_id"], config_key(r["config"]))
        configs.setdefault(key, Config.from_record(r["config"]))
        machine = machine_of(r) or UNRECORDED_MACHINE
        totals.setdefault(key, {}).setdefault(machine, []).append(r["results"]["total_s"])
    return {key: (configs[key], {m: median(v) for m, v in machines.items()})
            for key, machines in totals.items()}


def machine_log_ratios(records: list[dict]) -> dict[str, list[float]]:
    """Per regime (Config.regime), log(one machine's median total / the median of the other
    machines' medians), for every config measured on two machines or more: how far another
    machine of the same GPU lands from what the others measured."""
    out: dict[str, list[float]] = {}
    for config, machines in machine_medians(records).values():
        medians = list(machines.values())
        if len(medians) < 2:
            continue
        for i, m in enumerate(medians):
            out.setdefault(config.regime(), []).append(
                math.log(m / median(medians[:i] + medians[i + 1:])))
    return out


def config_key(config: dict) -> str:
    """Canonical identity of a probed config: sorted compact JSON of the documented config
    fields only (unknown keys ignored; absent optional fields at their defaults; guidance_scale
    and a memory cap as floats, so 0 and 0.0 are one key). A single-GPU layout and the settings
    of SETTING_OPTIONAL at their defaults are left out, so the keys of records written before
    they existed stay what they were."""
    missing = [k for k in CONFIG_REQUIRED if k not in config]
    if missing:
        raise AdvisorError(f"config: missing {', '.join(missing)}")
    canonical = {**CONFIG_OPTIONAL, **{k: config[k] for k in CONFIG_FIELDS if k in config}}
    parallel = canonical.pop("parallel")
    if isinstance(parallel, dict) and parallel["mode"] != "none":
        canonical["parallel"] = {"mode": parallel["mode"], "gpus": parallel["gpus"]}
    canonical["guidance_scale"] = float(canonical["guidance_scale"])
    if canonical["memory_cap_gib"] is not None:
        canonical["memory_cap_gib"] = float(canonical["memory_cap_gib"])
    for key in SETTING_OPTIONAL:  # at their defaults, as in the records before they existed
        if canonical[key] == CONFIG_OPTIONAL[key]:
            del canonical[key]
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"))
