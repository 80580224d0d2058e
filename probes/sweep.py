"""Sweep a grid: order the configs, load pipelines as rarely as possible, measure, append records.

- Order: grouped by what needs a new pipeline (dtype, offload, compile), then attention backend,
  then family; shapes ascend (pixels x batch) within a family so that the OOM rule can skip.
- Faults: CUDA out of memory gives an `oom` record, frees the memory and skips the configs of
  the same family at least as large in both pixels and batch (not recorded; counted in the
  summary). Any other exception gives an `error` record. Either way the sweep goes on.
- Ctrl-C: the first finishes the config in progress, writes its record and stops; a second one
  aborts at once. Records are appended one at a time, atomically, so the file is always valid.
- Resume: configs already in the output file (any status) are skipped, and its `oom` records
  feed the skip rule; corrupt lines are reported with their line numbers and ignored.
- `limit_s`: a soft time budget; no config starts that would end past it.
"""
from __future__ import annotations

import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil
import torch
from tqdm import tqdm

from advisor import records, workload
from advisor.errors import AdvisorError
from probes import pipeline
from advisor.contract import Config
from probes.measure import measure
from probes.meters import Nvml

ORDER = {"dtype": ["bf16", "fp16", "fp32"], "offload": ["none", "model", "sequential"],
         "attention": ["native", "cudnn", "flash"]}
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
        return (ORDER["dtype"].index(load.dtype), ORDER["offload"].index(c.offload), c.compile,
                ORDER["attention"].index(c.attention), c.precision, c.family(),
                c.pixels * c.batch, c.pixels, c.batch)
    return sorted(configs, key=key)


def dominated(config: Config, ooms: list[Config]) -> bool:
    """At least as large, in pixels and in batch, as a config of its family that ran out of memory."""
    return any(o.family() == config.family() and config.pixels >= o.pixels
               and config.batch >= o.batch for o in ooms)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


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
    rounded down). Offload runs are far slower than the prior until one has been measured.
    """

    PRIOR_TFLOPS = {"bf16": 300.0, "fp16": 300.0, "fp32": 40.0, "fp32-tf32": 150.0}
    CALL_OVERHEAD_S = 0.05

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.rates: dict[tuple, float] = {}
        self.load_s = FIRST_LOAD_GUESS_S
        self.compile_s = COMPILE_GUESS_S

    @staticmethod
    def call_tflops(c: Config, steps: int) -> float:
        passes = 2 if c.cfg else 1
        return c.batch * (passes * workload.text_encoder_tflops(c.max_sequence_length)
                          + steps * workload.transformer_forwards(1, c.cfg)
                          * workload.transformer_tflops_per_forward(c.height, c.width,
                                                                    c.caption_tokens)
                          + workload.vae_decode_tflops(c.height, c.width))

    def call_s(self, c: Config, steps: int) -> float:
        rate = self.rates.get((c.precision, c.offload, c.compile), self.PRIOR_TFLOPS[c.precision])
        return self.CALL_OVERHEAD_S + self.call_tflops(c, steps) / rate

    def config_s(self, c: Config) -> float:
        seconds = self.call_s(c, 1) + min(self.budget_s, 3 * self.call_s(c, 3))
        if c.compile:
            seconds += self.compile_s + self.call_s(c, 1)
        if c.end_to_end:
            seconds += self.call_s(c, c.steps)
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
        "host": {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "ram_gb": ram_mb / 1024},
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


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_record(env: dict, loaded: pipeline.Loaded | None, config: Config, status: str,
                results: dict | None, error: str | None) -> dict:
    """One record; without a loaded pipeline (its load failed) the architecture is left out."""
    return {
        "schema_version": records.SCHEMA_VERSION,
        "status": status,
        "error": error,
        "weights": env["weights"],
        "weights_source": env["weights_source"],
        **({"architecture": loaded.architecture} if loaded else {}),
        "grid": env["grid"],
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": env["gpu"], "host": env["host"], "software": env["software"],
        "config": config.record(),
        "results": results,
    }


def existing(out: Path, summary: Summary) -> tuple[set[str], list[Config]]:
    """Config keys already measured in `out` and its OOM configs; corrupt lines reported."""
    if not out.exists():
        return set(), []
    found, problems = records.read_records(out)
    summary.problems = problems
    for problem in problems:
        print(f"warning: skipping {problem}")
    ooms = [Config.from_record(r["config"]) for r in found if r["status"] == "oom"]
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

    def begin(self, config: Config) -> None:
        self.bar.set_postfix_str(config.label())

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
    done, ooms = existing(opts.out, summary)
    todo = [c for c in order(opts.configs) if records.config_key(c.record()) not in done]
    summary.resumed = len(opts.configs) - len(todo)
    if summary.resumed:
        print(f"resuming: {summary.resumed} of {len(opts.configs)} configs already in {opts.out}")

    weights_path = pipeline.find_weights(opts.weights, opts.allow_download)
    nvml = Nvml.open(opts.device)
    env = environment(opts.device, nvml)
    gpu_entry = env.pop("_catalog_gpu")
    env.update(weights="synthetic" if weights_path is None else "pretrained",
               weights_source=pipeline.weights_source(weights_path, opts.tiny), grid=opts.grid)
    print(f"device: {env['gpu']['name']} (catalog: {env['gpu']['catalog_id'] or 'no entry'})")
    print(f"weights: {env['weights'].upper()} ({env['weights_source']})"
          + ("; random values: timings and memory are real, images are noise"
             if weights_path is None else ""))

    pipeline.freeze_heap()
    forecast = Forecast(opts.budget_s)
    progress = Progress([forecast.config_s(c) for c in todo])
    loaded: pipeline.Loaded | None = None
    attention = None  # the backend of the last config measured
    failed_loads: dict[pipeline.LoadKey, tuple[str, str]] = {}
    try:
        with Interrupt() as interrupt:
            for index, config in enumerate(todo):
                predicted = forecast.config_s(config)
                if dominated(config, ooms):
                    summary.skipped_oom.append(config)
                    progress.end()
                    continue
                key = pipeline.LoadKey.of(config)
                needs_load = loaded is None or loaded.key != key
                elapsed = time.time() - opts.started
                if interrupt.requested:
                    summary.stopped = "interrupted (Ctrl-C)"
                elif opts.limit_s and (elapsed + predicted + needs_load * forecast.load_s
                                       > opts.limit_s):
                    summary.stopped = (f"time limit: {elapsed:.0f} s of {opts.limit_s:.0f} s used, "
                                       f"the next config needs about {predicted:.0f} s")
                if summary.stopped:
                    summary.not_run = [c for c in todo[index:] if not dominated(c, ooms)]
                    break
                progress.begin(config)
                if needs_load and key not in failed_loads:
                    pipeline.release(loaded)
                    loaded = None
                    loaded, failure = _load(key, opts, weights_path)
                    if failure:
                        failed_loads[key] = failure
                    else:
                        forecast.load_s = loaded.load_s
                if key in failed_loads:
                    (status, error), results = failed_loads[key], None
                else:
                    status, results, error = _measure(
                        loaded, config, opts, nvml, gpu_entry,
                        settle_first=needs_load or config.attention != attention)
                    attention = config.attention
                record = make_record(env, loaded, config, status, results, error)
                records.append_record(opts.out, record)
                summary.rows.append(record)
                if status == "oom":
                    ooms.append(config)
                if results:
                    forecast.observe(config, results)
                progress.end(_line(record))
    finally:
        progress.close()
        pipeline.release(loaded)
    return summary


def _load(key, opts: Options, weights_path):
    try:
        loaded = pipeline.load(key, opts.device, weights_path, opts.tiny)
    except AdvisorError:  # not a load failure: a model the probe does not measure
        raise
    except Exception as exc:  # noqa: BLE001 - recorded against every config of this pipeline
        message = f"loading the pipeline failed: {type(exc).__name__}: {exc}"
        status = "oom" if is_oom(exc) else "error"
        del exc
        pipeline.free_memory()
        tqdm.write(message, file=sys.stdout)
        return None, (status, message)
    tqdm.write(f"loaded {key.dtype} pipeline (offload {key.offload}, compile {key.compile}) in "
               f"{loaded.load_s:.1f} s, host RSS peak {loaded.host_rss_peak_mb / 1024:.1f} GB",
               file=sys.stdout)
    return loaded, None


def _measure(loaded, config: Config, opts: Options, nvml, gpu_entry, settle_first: bool):
    """(status, results, error) of one config; the exception's frames are dropped before the
    memory is freed, so that an OOM does not leave its tensors alive."""
    try:
        peak = gpu_entry.dense_tflops(config.precision) if gpu_entry else None
        return "ok", measure(loaded, config, opts.device, nvml, peak, opts.budget_s,
                             settle_first), None
    except Exception as exc:  # noqa: BLE001 - any failure is recorded and the sweep goes on
        status = "oom" if is_oom(exc) else "error"
        error = f"{type(exc).__name__}: {exc}".strip()
        if status == "error":
            tqdm.write("".join(traceback.format_exception(exc)[-3:]).rstrip(), file=sys.stdout)
        del exc
    if loaded.key.offload != "none":
        loaded.pipe.maybe_free_model_hooks()  # send models back to the host after a failed call
    pipeline.free_memory()
    return status, None, error[:2000]


def _line(record: dict) -> str:
    label = Config.from_record(record["config"]).label()
    r = record["results"]
    if record["status"] != "ok":
        return f"{label}: {record['status'].upper()} {record['error'][:160]}"
    memory = (f", peak {r['peak_allocated_mb'] / 1024:.1f} GiB allocated"
              if r["peak_allocated_mb"] is not None else "")
    nvml = f", NVML {r['nvml_peak_used_mb'] / 1024:.1f} GiB" if r["nvml_peak_used_mb"] else ""
    return (f"{label}: {r['total_s']:.3f} s/batch (text {r['text_encode_s']:.3f}, step "
            f"{r['denoise_step_s']:.3f}, vae {r['vae_decode_s']:.3f}), {r['img_per_s']:.2f} img/s"
            f"{memory}{nvml}")


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
