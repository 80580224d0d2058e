"""Several GPUs of one host: a worker process per GPU, all on the same config at once, and one
record per config.

Layouts (`config.parallel`, advisor.contract.Parallel):
- `data`: each worker runs its own pipeline, measured as a single-GPU sweep measures it
  (probes.runs.Runs). `Together` starts the timed calls of every worker at once (a barrier), and
  a worker whose timed calls end first keeps its GPU busy with untimed calls of the same config
  until every worker's have ended: no timed call runs beside an idle GPU, so the figures are
  those of a full box (host CPUs, RAM and PCIe shared).
- `ulysses`, `ring`: the workers split one image (probes.split).

The workers are spawned processes (fresh CUDA state), each with CUDA_VISIBLE_DEVICES naming one
GPU of this process's (a Ray task's assignment included), so each sees its GPU as cuda:0; with
`--device cpu` they are CPU processes (the tests). They start with Ctrl-C ignored: the sweep's
handler in this process finishes the config, then stops them. This process makes no CUDA call;
it samples the host's CPU use and RAM (psutil) while the workers run.

Faults: a worker's OOM or error is the config's record, naming the GPU (the others stop at the
barrier). A worker that dies, or that has not answered FAULT_GRACE_S after another one failed (a
split group stuck in a collective), ends the pool; the next config starts a new one.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import statistics
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import wait

import psutil

from advisor.contract import SPLIT_MODES, Config, Parallel
from advisor.errors import AdvisorError
from probes import pipeline
from probes.meters import Sampler
from probes.runs import Outcome, Runs

MB = 2**20
READY_TIMEOUT_S = 600.0  # a worker's start: imports, NVML, the process group (no weights yet)
FAULT_GRACE_S = 60.0  # after one worker failed a config, how long the others may take to answer
HOST_SAMPLE_S = 0.05
# What each GPU's entry of `results.replicas` keeps of its own results block.
REPLICA_KEYS = ("total_s", "denoise_step_s", "img_per_s", "peak_allocated_mb",
                "nvml_peak_used_mb", "gpu_util_pct", "power_w", "load_s", "host_rss_peak_mb")


class PartnerFailed(RuntimeError):
    """Another worker failed this config before the timed calls: this one stopped there."""


class Together:
    """The measure group of data-parallel replicas (probes.measure): the timed calls start
    together, and each worker keeps its GPU busy until every worker's timed calls have ended.
    `window`: this worker's timed span (perf_counter, CLOCK_MONOTONIC: one clock for the host)."""

    agree = None  # each replica decides its own calls

    def __init__(self, barrier, done, gpus: int):
        self.barrier, self.done, self.gpus = barrier, done, gpus
        self.window: tuple[float, float] | None = None

    def start(self) -> None:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            raise PartnerFailed("another GPU's worker failed this config") from None
        self.window = (time.perf_counter(), time.perf_counter())

    def finish(self, call) -> None:
        with self.done.get_lock():
            self.done.value += 1
        self.window = (self.window[0], time.perf_counter())
        while self.done.value < self.gpus:
            call()  # untimed: the other GPUs are still timing theirs

    def abandon(self) -> None:
        """This worker failed the config: release the others from the barrier and the wait."""
        self.barrier.abort()
        with self.done.get_lock():
            self.done.value += self.gpus


@dataclass
class LoadInfo:
    """What a record takes from the workers' pipeline (probes.runs.make_record)."""
    architecture: str
    quantization: dict | None
    load_s: float


@dataclass
class Reply:
    rank: int
    outcome: Outcome
    window: tuple[float, float] | None
    loaded: LoadInfo | None


def _work(rank: int, layout: Parallel, opts, weights_path, conn, barrier, done, port: int) -> None:
    """A worker: set up, send the record blocks of its GPU, then run each config it is sent."""
    import torch

    from probes import split

    device = torch.device(opts.device.type, 0) if opts.device.type == "cuda" else opts.device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # the host's cores shared among the workers
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // layout.gpus))
    if layout.mode in SPLIT_MODES:
        split.join(rank, layout, device, port)
        group = split.Lockstep(device)
    else:
        group = Together(barrier, done, layout.gpus)
    runs = Runs(replace(opts, device=device), weights_path, group)
    conn.send(runs.env)
    pipeline.freeze_heap()
    try:
        while (config := conn.recv()) is not None:
            outcome = runs.run(config, lambda cap_gib: None)
            if outcome.status != "ok" and isinstance(group, Together):
                group.abandon()
            loaded = runs.loaded and LoadInfo(runs.loaded.architecture, runs.loaded.quantization,
                                              runs.loaded.load_s)
            conn.send(Reply(rank, outcome, group.window, loaded))
            group.window = None
    except EOFError:  # the sweep's process is gone
        pass
    finally:
        runs.close()


@dataclass
class Worker:
    process: mp.Process
    conn: object
    host: psutil.Process


class ReplicaRuns:
    """probes.sweep's runs for a layout of several GPUs: the same calls as runs.Runs (`env`,
    `loaded`, `needs_load`, `run`, `close`), carried out by the worker pool."""

    def __init__(self, opts, weights_path, layout: Parallel):
        self.opts, self.weights_path, self.layout = opts, weights_path, layout
        self.devices = visible_devices(layout.gpus, opts.device.type)
        self.loaded: LoadInfo | None = None
        self.load_key: pipeline.LoadKey | None = None
        self.workers: list[Worker] = []
        self.envs = self._start()
        names = sorted({env["gpu"]["name"] for env in self.envs})
        if len(names) > 1:
            self.close()
            raise AdvisorError(f"--gpus {layout.gpus}: the GPUs differ ({', '.join(names)}); a "
                               "record is one GPU model's. Set CUDA_VISIBLE_DEVICES to GPUs of "
                               "one model")
        self.env = self.envs[0]

    def _start(self) -> list[dict]:
        ctx = mp.get_context("spawn")
        self.barrier, self.done = ctx.Barrier(self.layout.gpus), ctx.Value("i", 0)
        port = free_port()
        for rank, visible in enumerate(self.devices):
            ours, theirs = ctx.Pipe()
            process = ctx.Process(target=_work, name=f"probe-gpu{rank}", args=(
                rank, self.layout, self.opts, self.weights_path, theirs, self.barrier, self.done,
                port))
            with _environ(CUDA_VISIBLE_DEVICES=visible), _ctrl_c_ignored():
                process.start()
            theirs.close()
            self.workers.append(Worker(process, ours, psutil.Process(process.pid)))
        envs = self._collect(READY_TIMEOUT_S)
        if any(isinstance(env, str) for env in envs.values()):
            problems = "; ".join(f"GPU {rank}: {env}" for rank, env in sorted(envs.items())
                                 if isinstance(env, str))
            self.close()
            raise AdvisorError(f"the worker processes of {self.layout.label()} did not start: "
                               f"{problems}")
        return [envs[rank] for rank in range(self.layout.gpus)]

    def needs_load(self, config: Config) -> bool:
        return not self.workers or self.load_key != pipeline.LoadKey.of(config)

    def run(self, config: Config, before_trial=None):
        """The outcome of `config` on every GPU at once, as one record's."""
        if not self.workers:  # the last pool ended on a fault
            self.envs = self._start()
        self.barrier.reset()
        self.done.value = 0
        for worker in self.workers:
            worker.conn.send(config)
        with Sampler(self._host_reading, HOST_SAMPLE_S) as host:
            got = self._collect(None)
        replies = [got.get(rank) for rank in range(self.layout.gpus)]
        faults = {rank: reply if isinstance(reply, str) else "no answer"
                  for rank, reply in enumerate(replies) if not isinstance(reply, Reply)}
        if faults:
            self.close()  # a worker is gone or stuck: the next config starts a new pool
            replies = [reply if isinstance(reply, Reply) else
                       Reply(rank, Outcome(config, "error", None, f"worker: {faults[rank]}"),
                             None, None) for rank, reply in enumerate(replies)]
        self.load_key = pipeline.LoadKey.of(config)
        loads = [r.loaded for r in replies if r.loaded]
        self.loaded = replace(loads[0], load_s=max(info.load_s for info in loads)) if loads \
            else None
        return combine(config, self.layout, replies, self.envs, host)

    def _collect(self, timeout_s: float | None) -> dict:
        """One message from each worker, by rank; a worker that died gives its exit as a
        string. After a failure (or past `timeout_s`), those that have not answered within
        FAULT_GRACE_S are left out."""
        pending = {worker.conn: rank for rank, worker in enumerate(self.workers)}
        got: dict = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending and (deadline is None or time.monotonic() < deadline):
            for conn in wait(list(pending), timeout=1.0):
                rank = pending.pop(conn)
                try:
                    got[rank] = conn.recv()
                except EOFError:
                    self.workers[rank].process.join(5)
                    got[rank] = f"its process exited (code {self.workers[rank].process.exitcode})"
                failed = isinstance(got[rank], str) or (isinstance(got[rank], Reply)
                                                         and got[rank].outcome.status != "ok")
                if failed:
                    self.barrier.abort()
                    grace = time.monotonic() + FAULT_GRACE_S
                    deadline = grace if deadline is None else min(deadline, grace)
        return got

    def _host_reading(self) -> dict:
        reading = {"cpu_pct": psutil.cpu_percent(None),
                   "ram_used_mb": psutil.virtual_memory().used / MB}
        for rank, worker in enumerate(self.workers):
            with contextlib.suppress(psutil.Error):
                reading[f"cpu_pct_{rank}"] = worker.host.cpu_percent(None)
                reading[f"rss_mb_{rank}"] = worker.host.memory_info().rss / MB
        return reading

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self.workers:
            worker.process.join(30)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self.workers = []
        self.loaded = self.load_key = None


def combine(config: Config, layout: Parallel, replies: list[Reply], envs: list[dict],
            host: Sampler):
    """One record's outcome from every GPU's. A failure: the first worker that failed on its
    own (not stopped by another's failure). Else the results block of a typical GPU (data: the
    replica of median total_s; split: rank 0, whose timings are the slowest rank's) with the
    aggregate throughput, the host's CPU use and RAM over the span when every GPU was timing,
    and each GPU's own figures (`replicas`)."""
    from probes import split
    failed = [r for r in replies if r.outcome.status != "ok"]
    if failed:
        first = next((r for r in failed
                      if not (r.outcome.error or "").startswith(PartnerFailed.__name__)), failed[0])
        o = first.outcome
        return Outcome(config, o.status, None, f"GPU {first.rank}: {o.error}", o.failed_stage)
    results = [r.outcome.results for r in replies]
    windows = [r.window for r in replies if r.window]
    window = (min(w[0] for w in windows), max(w[1] for w in windows))
    if layout.mode == "data":
        by_time = sorted(results, key=lambda r: r["total_s"])
        top = dict(by_time[len(by_time) // 2])  # the median; of the middle two, the slower
        top["aggregate_img_per_s"] = sum(r["img_per_s"] for r in results)
    else:
        top = dict(results[0])
        top["aggregate_img_per_s"] = top["img_per_s"]
        top["parallel_library"] = split.library()
        step = (top.get("profile") or {}).get("denoise_step")
        if step:
            top["communication_share"] = step["class_s"]["communication"] / step["wall_s"]
    cpu = host.values("cpu_pct", [window])
    ram = host.values("ram_used_mb", [window])
    top.update(
        load_s=max(r["load_s"] for r in results),  # the box is ready when its last GPU is
        together_s=window[1] - window[0],
        host_cpu_pct=_mean(cpu), host_cpu_pct_max=max(cpu, default=None),
        host_ram_used_mb=max(ram, default=None),
        replicas=[{"index": rank, "gpu_uuid": env["gpu"].get("uuid"),
                   **{k: r.get(k) for k in REPLICA_KEYS},
                   "process_cpu_pct": _mean(host.values(f"cpu_pct_{rank}", [window])),
                   "process_rss_mb": max(host.values(f"rss_mb_{rank}", [window]), default=None)}
                  for rank, (r, env) in enumerate(zip(results, envs))],
    )
    return Outcome(config, results=top)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def visible_devices(gpus: int, device_type: str) -> list[str]:
    """The CUDA_VISIBLE_DEVICES value of each worker: one GPU each, from those this process
    may use (its own CUDA_VISIBLE_DEVICES, as a Ray task's, else every GPU); none on CPU."""
    if device_type != "cuda":
        return [""] * gpus
    import torch

    mine = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d for d in mine.split(",") if d] if mine is not None else \
        [str(i) for i in range(torch.cuda.device_count())]
    if len(ids) < gpus:
        raise AdvisorError(f"--gpus {gpus}: this machine lets the probe use {len(ids)} GPU(s)"
                           + (f" (CUDA_VISIBLE_DEVICES={mine})" if mine is not None else ""))
    return ids[:gpus]


def free_port() -> int:
    """A free TCP port on this host, for a split group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _environ(**values: str):
    """Environment variables set for the duration (a spawned process inherits them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _ctrl_c_ignored():
    """SIGINT ignored while a worker starts: it inherits the disposition and Python keeps it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
