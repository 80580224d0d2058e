"""Sweep a grid: order the configs, load pipelines as rarely as possible, measure, append records.

- Order: grouped by what needs a new pipeline (quantization, dtype, offload, compile), then
  attention backend, then family; shapes ascend (pixels x batch) within a family so that the OOM
  rule can skip. Quantized pipelines come last (torchao imports change process-wide state).
- Faults: CUDA out of memory gives an `oom` record, frees the memory and skips the configs of
  the same family at least as large in both pixels and batch (not recorded; counted in the
  summary). Any other exception gives an `error` record. Either way the sweep goes on.
- Ctrl-C: the first finishes the config in progress, writes its record and stops; a second one
  aborts at once. Records are appended one at a time, atomically, so the file is always valid.
- Resume: configs already in the output file (any status) are skipped, and its `oom` records
  feed the skip rule; corrupt lines are reported with their line numbers and ignored.
- `limit_s`: a soft time budget; no config starts that would end past it.
- Memory caps (probes.caps): a config's `memory_cap_gib` is set before its pipeline loads and
  before it runs. With `min_cap`, each config gets a search for the smallest cap instead, then
  the usual measurement at that cap; its record carries the cap found and the trials. Ctrl-C or
  the time limit during a search drop that config (no record) and stop the sweep.
- Several GPUs (`config.parallel`): configs of one layout run together, on a worker process per
  GPU (probes.replicas); this process then makes no CUDA call. One record per config.
"""
from __future__ import annotations

import hashlib
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import psutil
import torch
from tqdm import tqdm

from advisor import records, workload
from advisor.contract import (
    ATTENTIONS,
    PARALLEL_MODES,
    PROBED_OFFLOADS,
    QUANTIZATIONS,
    Config,
    Parallel,
    cfg_passes,
    compute_precision,
)
from advisor.errors import AdvisorError
from probes import caps, pipeline
from probes.measure import failed_stage, measure
from probes.meters import Nvml

ORDER = {"dtype": ["bf16", "fp16", "fp32"], "offload": list(PROBED_OFFLOADS),
         "attention": list(ATTENTIONS), "quantization": [None, *QUANTIZATIONS]}
CONFIG_BUDGET_S = 6.0  # time for the timed calls of one config (warm-up and whole runs aside)
FIRST_LOAD_GUESS_S = 30.0  # until a load has been timed
COMPILE_GUESS_S = 60.0  # regional compile of a new shape, until one has been timed


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


@dataclass
class Summary:
    rows: list[dict] = field(default_factory=list)  # records written in this run
    resumed: int = 0  # configs already in the file
    skipped_oom: list[Config] = field(default_factory=list)
    not_run: list[Config] = field(default_factory=list)  # time limit or Ctrl-C
    problems: list[str] = field(default_factory=list)  # corrupt lines of the existing file
    stopped: str | None = None


def order(configs: list[Config]) -> list[Config]:
    def key(c: Config):
        load = pipeline.LoadKey.of(c)
        return (PARALLEL_MODES.index(c.parallel.mode), c.parallel.gpus,
                ORDER["quantization"].index(load.quantization), ORDER["dtype"].index(load.dtype),
                ORDER["offload"].index(c.offload), c.compile,
                ORDER["attention"].index(c.attention), c.precision, c.family(),
                c.pixels * c.batch, c.pixels, c.batch)
    return sorted(configs, key=key)


def dominated(config: Config, ooms: list[Config]) -> bool:
    """At least as large, in pixels and in batch, as a config of its family that ran out of memory."""
    return any(o.family() == config.family() and config.pixels >= o.pixels
               and config.batch >= o.batch for o in ooms)


class Interrupt:
    """First Ctrl-C: finish the current config, then stop. Second: KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: finishing the current config, then stopping (Ctrl-C again to abort)")

    def __enter__(self) -> "Interrupt":
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


class Forecast:
    """Seconds a config will take: for the progress bar's ETA and the --limit-s check.

    A call of s steps costs overhead + TFLOPs / rate. The rate of a full run is learnt from each
    finished config, per (precision, offload, compile); before that, a prior per precision (H100,
    rounded down), slowed down by a prior per offload setting. A minimum-cap search adds its
    calls (`search`).
    """

    PRIOR_TFLOPS = {"bf16": 300.0, "fp16": 300.0, "fp32": 40.0, "fp32-tf32": 150.0,
                    "fp8": 300.0, "fp8-wo": 200.0, "int8-wo": 200.0}
    # H200, bf16 1536x1536 b1: 3.5 s, model offload 13.7 s, sequential 21.4 s; group as model.
    PRIOR_OFFLOAD_SLOWDOWN = {"none": 1.0, "model": 4.0, "sequential": 6.0, "group": 4.0}
    CALL_OVERHEAD_S = 0.05

    def __init__(self, budget_s: float, search: bool = False):
        self.budget_s = budget_s
        self.search = search
        self.rates: dict[tuple, float] = {}
        self.load_s = FIRST_LOAD_GUESS_S
        self.compile_s = COMPILE_GUESS_S

    @staticmethod
    def call_tflops(c: Config, steps: int) -> float:
        passes = cfg_passes(c.cfg)
        return c.batch * (passes * workload.text_encoder_tflops(c.max_sequence_length)
                          + steps * workload.transformer_forwards(1, c.cfg)
                          * workload.transformer_tflops_per_forward(c.height, c.width,
                                                                    c.caption_tokens)
                          + workload.vae_decode_tflops(c.height, c.width))

    def call_s(self, c: Config, steps: int) -> float:
        prior = self.PRIOR_TFLOPS[c.precision] / self.PRIOR_OFFLOAD_SLOWDOWN[c.offload]
        rate = self.rates.get((c.precision, c.offload, c.compile), prior)
        return self.CALL_OVERHEAD_S + self.call_tflops(c, steps) / rate

    def config_s(self, c: Config) -> float:
        seconds = self.call_s(c, 1) + min(self.budget_s, 3 * self.call_s(c, 3))
        if c.compile:
            seconds += self.compile_s + self.call_s(c, 1)
        if c.end_to_end:
            seconds += self.call_s(c, c.steps)
        if self.search:
            seconds += caps.SEARCH_TRIALS * caps.TRIAL_CALLS * self.call_s(c, caps.TRIAL_STEPS)
        return seconds

    def observe(self, c: Config, results: dict) -> None:
        seconds = max(results["total_s"] - self.CALL_OVERHEAD_S, 1e-3)
        self.rates[(c.precision, c.offload, c.compile)] = self.call_tflops(c, c.steps) / seconds
        if results["compile_s"] is not None:
            self.compile_s = results["compile_s"]


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


def existing(out: Path, summary: Summary, min_cap: bool) -> tuple[set[str], list[Config]]:
    """Config keys already measured in `out` and its OOM configs; corrupt lines reported.

    For a minimum-cap search the keys are those of the records of earlier searches, uncapped:
    a cap found (`results.min_cap_gib`), or a failure without a cap."""
    if not out.exists():
        return set(), []
    found, problems = records.read_records(out)
    summary.problems = problems
    for problem in problems:
        print(f"warning: skipping {problem}")
    ooms = [Config.from_record(r["config"]) for r in found if r["status"] == "oom"]
    if min_cap:
        found = [{**r, "config": {**r["config"], "memory_cap_gib": None}} for r in found
                 if (r["results"] or {}).get("min_cap_gib") is not None
                 or (r["status"] != "ok" and r["config"].get("memory_cap_gib") is None)]
    return {records.config_key(r["config"]) for r in found}, ooms


class Progress:
    """A progress bar in forecast seconds (an ETA that weighs big configs more), and one line per
    config with its position and the ETA (the bar is off when the output is not a terminal)."""

    def __init__(self, forecasts: list[float]):
        self.forecasts = forecasts  # fixed at the start, so that done + left stays the total
        self.total = sum(forecasts)
        self.count = len(forecasts)
        self.done = 0.0
        self.index = 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=round(self.total), disable=None, file=sys.stdout, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| [{elapsed}<{remaining}] {postfix}")

    def begin(self, config: Config, detail: str | None = None) -> None:
        self.bar.set_postfix_str(config.label() + (f": {detail}" if detail else ""))

    def end(self, line: str | None = None) -> None:
        self.done += self.forecasts[self.index]
        self.index += 1
        self.bar.update(round(self.done) - self.bar.n)
        if line:
            tqdm.write(f"[{self.index}/{self.count} eta {self.eta()}] {line}", file=sys.stdout)

    def eta(self) -> str:
        if not self.done:
            return "?"
        left = (time.perf_counter() - self.start) / self.done * (self.total - self.done)
        return f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"

    def close(self) -> None:
        self.bar.close()


def run(opts: Options) -> Summary:
    """Measure every config of `opts` not yet in `opts.out`; append one record each."""
    summary = Summary()
    for _ in measured(opts, summary):
        pass
    return summary


def measured(opts: Options, summary: Summary) -> Iterator[dict]:
    """`run`, yielding each record once it is appended (a Ray task streams them: probes.fleet)."""
    done, ooms = existing(opts.out, summary, opts.min_cap)
    todo = [c for c in order(opts.configs) if records.config_key(c.record()) not in done]
    summary.resumed = len(opts.configs) - len(todo)
    if summary.resumed:
        print(f"resuming: {summary.resumed} of {len(opts.configs)} configs already in {opts.out}")

    weights_path = pipeline.find_weights(opts.weights, opts.allow_download)
    kind = "synthetic" if weights_path is None else "pretrained"
    print(f"weights: {kind.upper()} ({pipeline.weights_source(weights_path, opts.tiny)})"
          + ("; random values: timings and memory are real, images are noise"
             if weights_path is None else ""))

    pipeline.freeze_heap()
    forecast = Forecast(opts.budget_s, search=opts.min_cap)
    progress = Progress([forecast.config_s(c) for c in todo])
    layouts = Layouts(opts, weights_path)
    try:
        with Interrupt() as interrupt:
            for index, config in enumerate(todo):
                if dominated(config, ooms):
                    summary.skipped_oom.append(config)
                    progress.end()
                    continue
                load_s = forecast.load_s if layouts.needs_load(config) else 0.0
                summary.stopped = stop_reason(interrupt, opts, forecast.config_s(config) + load_s)
                if summary.stopped:
                    summary.not_run = [c for c in todo[index:] if not dominated(c, ooms)]
                    break
                runs = layouts.runs(config.parallel)
                progress.begin(config)

                def before_trial(cap_gib: float, config=config) -> None:
                    progress.begin(config, f"trial cap {cap_gib:.2f} GiB")
                    reason = stop_reason(interrupt, opts)
                    if reason:
                        raise caps.Abandoned(f"{reason}, during the search of {config.label()}")

                try:
                    outcome = runs.run(config, before_trial)
                except caps.Abandoned as exc:
                    summary.stopped = str(exc)
                    summary.not_run = [c for c in todo[index:] if not dominated(c, ooms)]
                    break
                if runs.loaded:
                    forecast.load_s = runs.loaded.load_s
                record = make_record(runs.env, runs.loaded, outcome)
                records.append_record(opts.out, record)
                summary.rows.append(record)
                yield record
                if outcome.status == "oom":
                    ooms.append(outcome.config)
                if outcome.results:
                    forecast.observe(config, outcome.results)
                progress.end(_line(record))
    finally:
        progress.close()
        layouts.close()


class Layouts:
    """The runs of the current GPU layout: this process for one GPU (`Runs`), a worker process
    per GPU for several (probes.replicas); a config of another layout closes them first."""

    def __init__(self, opts: Options, weights_path):
        self.opts = opts
        self.weights_path = weights_path
        self.layout: Parallel | None = None
        self.current = None

    def needs_load(self, config: Config) -> bool:
        return config.parallel != self.layout or self.current.needs_load(config)

    def runs(self, layout: Parallel):
        if layout != self.layout:
            self.close()
            if layout.single:
                self.current = Runs(self.opts, self.weights_path)
            else:  # imported here: the workers import this module
                from probes.replicas import ReplicaRuns
                self.current = ReplicaRuns(self.opts, self.weights_path, layout)
            self.layout = layout
            gpu = self.current.env["gpu"]
            tqdm.write(f"device: {'' if layout.single else f'{layout.gpus} x '}{gpu['name']} "
                       f"(catalog: {gpu['catalog_id'] or 'no entry'})"
                       + ("" if layout.single else f", {layout.mode} parallel, a worker process "
                          "per GPU"), file=sys.stdout)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
        self.current, self.layout = None, None


def stop_reason(interrupt: Interrupt, opts: Options, needed_s: float = 0.0) -> str | None:
    """Why the sweep stops before a config (or a search trial) that needs `needed_s` more
    seconds, or None."""
    if interrupt.requested:
        return "interrupted (Ctrl-C)"
    elapsed = time.time() - opts.started
    if opts.limit_s and elapsed + needed_s > opts.limit_s:
        return (f"time limit: {elapsed:.0f} s of {opts.limit_s:.0f} s used"
                + (f", the next config needs about {needed_s:.0f} s" if needed_s else ""))
    return None


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


def _line(record: dict) -> str:
    label = Config.from_record(record["config"]).label()
    r = record["results"]
    if record["status"] != "ok":
        return f"{label}: {record['status'].upper()} {record['error'][:160]}"
    memory = (f", peak {r['peak_allocated_mb'] / 1024:.1f} GiB allocated"
              if r["peak_allocated_mb"] is not None else "")
    nvml = f", NVML {r['nvml_peak_used_mb'] / 1024:.1f} GiB" if r["nvml_peak_used_mb"] else ""
    search = (f", smallest cap {r['min_cap_gib']:g} GiB ({len(r['cap_trials'])} trials)"
              if r.get("min_cap_gib") is not None else "")
    if r.get("aggregate_img_per_s") is not None:  # several GPUs
        search += f", all GPUs {r['aggregate_img_per_s']:.2f} img/s"
    return (f"{label}: {r['total_s']:.3f} s/batch (text {r['text_encode_s']:.3f}, step "
            f"{r['denoise_step_s']:.3f}, vae {r['vae_decode_s']:.3f}), {r['img_per_s']:.2f} img/s"
            f"{memory}{nvml}{search}")


def print_summary(summary: Summary, out: Path) -> None:
    rows = summary.rows
    if rows:
        header = f"{'config':<44} {'status':<6} {'total_s':>8} {'img/s':>7} {'allocGiB':>8} " \
                 f"{'NVML GiB':>8} {'TFLOP/s':>8} {'MFU':>5}"
        print("\n" + header + "\n" + "-" * len(header))
        for record in rows:
            r = record["results"] or {}
            print(f"{Config.from_record(record['config']).label():<44} {record['status']:<6} "
                  f"{_fmt(r.get('total_s'), 3):>8} {_fmt(r.get('img_per_s'), 2):>7} "
                  f"{_fmt(r.get('peak_allocated_mb'), 1, 1024):>8} "
                  f"{_fmt(r.get('nvml_peak_used_mb'), 1, 1024):>8} "
                  f"{_fmt(r.get('achieved_tflops'), 0):>8} {_fmt(r.get('mfu'), 2):>5}")
    counts = {s: sum(r["status"] == s for r in rows) for s in records.STATUSES}
    print(f"\n{out}: {len(rows)} records written ({counts['ok']} ok, {counts['oom']} oom, "
          f"{counts['error']} error); {summary.resumed} already there")
    if summary.skipped_oom:
        print(f"skipped {len(summary.skipped_oom)} configs at least as large as one that ran out "
              "of memory (same family): " + ", ".join(c.label() for c in summary.skipped_oom))
    if summary.problems:
        print(f"{len(summary.problems)} unreadable lines in {out} were ignored (see warnings above)")
    if summary.stopped:
        print(f"stopped: {summary.stopped}; {len(summary.not_run)} configs not run. "
              "Run the same command again to resume.")


def _fmt(value, digits: int, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"
