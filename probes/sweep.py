"""Sweep a grid: order the configs, load pipelines as rarely as possible, measure, append records.

- Order: a grid's groups in the order listed where it asks (`order: listed`), then
  grouped by what needs a new pipeline (quantization, dtype, offload, compile), then
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

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from advisor import records
from advisor.contract import (
    ATTENTIONS,
    PARALLEL_MODES,
    PROBED_OFFLOADS,
    QUANTIZATIONS,
    Config,
    Parallel,
)
from probes import caps, pipeline
from probes.progress import Forecast, Interrupt, Progress
from probes.replicas import ReplicaRuns
from probes.runs import Options, Runs, make_record

ORDER = {"dtype": ["bf16", "fp16", "fp32"], "offload": list(PROBED_OFFLOADS),
         "attention": list(ATTENTIONS), "quantization": [None, *QUANTIZATIONS]}


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
        return (c.priority, PARALLEL_MODES.index(c.parallel.mode), c.parallel.gpus,
                ORDER["quantization"].index(load.quantization), ORDER["dtype"].index(load.dtype),
                ORDER["offload"].index(c.offload), c.compile,
                ORDER["attention"].index(c.attention), c.precision, c.family(),
                c.pixels * c.batch, c.pixels, c.batch)
    return sorted(configs, key=key)


def dominated(config: Config, ooms: list[Config]) -> bool:
    """At least as large, in pixels and in batch, as a config of its family that ran out of memory."""
    return any(o.family() == config.family() and config.pixels >= o.pixels
               and config.batch >= o.batch for o in ooms)


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
            else:
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
