"""How configs run in this process: the pipeline in hand, loaded as rarely as possible, the
memory cap, and the measurement or the minimum-cap search (`Runs`); what one config's run says
(`Outcome`) and the record it becomes (`make_record`), with the record blocks this device and
host share (`environment`). probes.sweep drives it for one GPU, probes.replicas in a worker
process per GPU.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import psutil
import torch
from tqdm import tqdm

from advisor import records
from advisor.contract import Config, compute_precision
from advisor.errors import AdvisorError
from probes import caps, pipeline
from probes.measure import failed_stage, measure
from probes.meters import Nvml

CONFIG_BUDGET_S = 6.0  # time for the timed calls of one config (warm-up and whole runs aside)


@dataclass
class Options:
    configs: list[Config]
    out: Path
    device: torch.device
    grid: str
    weights: str = "auto"  # auto | synthetic | PATH
    allow_download: bool = False
    tiny: bool = False
    limit_s: float | None = None
    budget_s: float = CONFIG_BUDGET_S
    min_cap: bool = False  # search each config's smallest memory cap (probes.caps)
    profile: bool = False  # add each record's op-class profile (probes.profile)
    # limit_s counts from the start of the process (imports included): epoch seconds
    started: float = field(default_factory=lambda: psutil.Process().create_time())




def environment(device: torch.device, nvml: Nvml | None) -> dict:
    """The `gpu`, `host` and `software` blocks shared by every record of this process."""
    import diffusers
    import transformers

    ram_mb = psutil.virtual_memory().total / 2**20
    if nvml is not None:
        gpu = nvml.info()
    else:  # CPU run, or a GPU without NVML
        gpu = {"name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "memory_mb": (torch.cuda.get_device_properties(device).total_memory / 2**20
                             if device.type == "cuda" else ram_mb),
               "driver": None, "cuda": None, "power_limit_w": None}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        gpu["compute_capability"] = f"{major}.{minor}"
    else:
        gpu["compute_capability"] = None
    entry = catalog_entry(gpu["name"], gpu["memory_mb"]) if device.type == "cuda" else None
    gpu["catalog_id"] = entry.id if entry else None
    return {
        "gpu": gpu,
        "host": {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "ram_gb": ram_mb / 1024,
                 "fingerprint": host_fingerprint()},
        "software": {
            "python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
        },
        "_catalog_gpu": entry,
    }


def catalog_entry(name: str, memory_mb: float | None):
    """The catalog GPU for an NVML name (and memory size, which tells apart SKUs sharing a name),
    or None."""
    from advisor.catalog import load_catalog
    return load_catalog().match_nvml(name, memory_gb=None if memory_mb is None else memory_mb / 1024)


def host_fingerprint() -> str:
    """A short hash telling machines apart (two machines of one GPU differ: records say which
    measured): the host name, the systemd machine id where there is one, CPU model and RAM."""
    machine_id = Path("/etc/machine-id")
    parts = [platform.node(), machine_id.read_text().strip() if machine_id.is_file() else "",
             _cpu_name(), str(psutil.virtual_memory().total)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class Outcome:
    """What one config's record says: the config as run (a search sets its cap), the status, and
    the results or the error and the stage that failed (`load` or a stage of the call)."""
    config: Config
    status: str = "ok"
    results: dict | None = None
    error: str | None = None
    failed_stage: str | None = None


def make_record(env: dict, loaded: pipeline.Loaded | None, outcome: Outcome) -> dict:
    """One record; without a loaded pipeline (its load failed) the architecture is left out."""
    return {
        "schema_version": records.SCHEMA_VERSION,
        "status": outcome.status,
        "error": outcome.error,
        **({"failed_stage": outcome.failed_stage} if outcome.status != "ok" else {}),
        "weights": env["weights"],
        "weights_source": env["weights_source"],
        **({"architecture": loaded.architecture} if loaded else {}),
        **({"quantization": loaded.quantization} if loaded and loaded.quantization else {}),
        "grid": env["grid"],
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": env["gpu"], "host": env["host"], "software": env["software"],
        "config": outcome.config.record(),
        "results": outcome.results,
    }




class Runs:
    """The pipeline in hand and how a config runs on it: loads (one per LoadKey; a failed one is
    remembered and recorded against each of its configs), the memory cap, then the measurement,
    or with `min_cap` the search and the measurement at the cap found. `env`: the record blocks
    of this device. `group`: how the measurement ties in with other processes (probes.replicas,
    one per GPU), or None."""

    def __init__(self, opts: Options, weights_path, group=None):
        self.opts = opts
        self.weights_path = weights_path
        self.group = group
        self.nvml = Nvml.open(opts.device)
        self.env = environment(opts.device, self.nvml)
        self.gpu_entry = self.env.pop("_catalog_gpu")
        self.env.update(weights="synthetic" if weights_path is None else "pretrained",
                        weights_source=pipeline.weights_source(weights_path, opts.tiny),
                        grid=opts.grid)
        self.loaded: pipeline.Loaded | None = None
        self.attention: str | None = None  # the backend of the last config measured
        self.failed_loads: dict[pipeline.LoadKey, tuple[str, str]] = {}  # (status, error)

    def needs_load(self, config: Config) -> bool:
        return self.loaded is None or self.loaded.key != pipeline.LoadKey.of(config)

    def close(self) -> None:
        pipeline.release(self.loaded)
        self.loaded = None
        caps.set_memory_cap(self.opts.device, None)

    def run(self, config: Config, before_trial) -> Outcome:
        """The outcome of one config; caps.Abandoned when `before_trial` stops a search."""
        key = pipeline.LoadKey.of(config)
        needs_load = self.needs_load(config)
        # The load runs under the cap too, but for a quantized pipeline, which is quantized on
        # the GPU from bf16 weights: capped after it (a small card loads quantized weights).
        caps.set_memory_cap(self.opts.device, None if key.quantization else config.memory_cap_gib)
        if needs_load and key not in self.failed_loads:
            self._load(key, capped=config.memory_cap_gib is not None)
        caps.set_memory_cap(self.opts.device, config.memory_cap_gib)
        if key in self.failed_loads:
            status, error = self.failed_loads[key]
            return Outcome(config, status, None, error, "load")
        settle = needs_load or config.attention != self.attention
        self.attention = config.attention
        if self.opts.min_cap:  # the search's calls warm the pipeline up: no settling
            return self._guarded(config, lambda: self._measure_at_min_cap(
                config, caps.search(self.loaded, config, self.opts.device, before_trial)))
        return self._measure(config, settle_first=settle)

    def _load(self, key: pipeline.LoadKey, capped: bool) -> None:
        pipeline.release(self.loaded)
        self.loaded = None
        try:
            self.loaded = pipeline.load(key, self.opts.device, self.weights_path, self.opts.tiny,
                                        capped=capped)
        except AdvisorError:  # not a load failure: a model the probe does not measure
            raise
        except Exception as exc:  # noqa: BLE001 - recorded against every config of this pipeline
            message = f"loading the pipeline failed: {type(exc).__name__}: {exc}"
            status = "oom" if pipeline.is_oom(exc) else "error"
            del exc
            pipeline.free_memory()
            tqdm.write(message, file=sys.stdout)
            self.failed_loads[key] = (status, message)
            return
        quantized = f", {key.quantization} in {self.loaded.quantization['quantize_s']:.1f} s" \
            if key.quantization else ""
        tqdm.write(f"loaded {key.dtype} pipeline (offload {key.offload}, compile {key.compile}"
                   f"{quantized}) "
                   f"in {self.loaded.load_s:.1f} s, host RSS peak "
                   f"{self.loaded.host_rss_peak_mb / 1024:.1f} GB", file=sys.stdout)

    def _measure(self, config: Config, settle_first: bool) -> Outcome:
        peak = self.gpu_entry.dense_tflops(compute_precision(config.precision)) \
            if self.gpu_entry else None
        return self._guarded(config, lambda: Outcome(config, results=measure(
            self.loaded, config, self.opts.device, self.nvml, peak, self.opts.budget_s,
            settle_first, self.opts.profile, self.group)))

    def _measure_at_min_cap(self, config: Config, search: caps.Search) -> Outcome:
        """The usual measurement under the smallest cap found. It makes more and longer calls
        than a trial; should one run out of memory, the next cap up is measured (RESOLUTION_GIB
        steps), up to the one known to run. Without a cap found, the record's cap is null."""
        cap, trials = search.min_cap_gib, search.trials
        while True:
            caps.set_memory_cap(self.opts.device, cap)
            outcome = self._measure(replace(config, memory_cap_gib=cap), settle_first=False)
            if outcome.status == "error":
                break
            trials.append(caps.Trial(cap, outcome.status, outcome.failed_stage))
            if outcome.status == "ok":
                outcome.results.update(min_cap_gib=cap, cap_trials=[t.record() for t in trials])
                return outcome
            if cap >= search.high_gib:
                break
            cap = min(cap + caps.RESOLUTION_GIB, search.high_gib)
        return replace(outcome, config=config, error=f"under a {cap:g} GiB cap: {outcome.error}")

    def _guarded(self, config: Config, attempt) -> Outcome:
        """attempt(), or the failure it raised as an outcome. The exception's frames are dropped
        before the memory is freed, so that an OOM does not leave its tensors alive."""
        try:
            return attempt()
        except caps.Abandoned:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is recorded and the sweep goes on
            failure = _failure(config, exc)
        pipeline.recover(self.loaded)
        return failure


def _failure(config: Config, exc: Exception) -> Outcome:
    status = "oom" if pipeline.is_oom(exc) else "error"
    if status == "error":
        tqdm.write("".join(traceback.format_exception(exc)[-3:]).rstrip(), file=sys.stdout)
    error = f"{type(exc).__name__}: {exc}".strip()[:2000]
    return Outcome(config, status, None, error, failed_stage(exc))
