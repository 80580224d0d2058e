"""Probe every GPU node of a Ray cluster at once (`advisor probe --ray ADDRESS`), into the usual
files.

- Nodes: the alive nodes with the GPUs a config needs (`--gpus N`: N; else 1), or every node
  with `--device cpu`. A first task on each node reports its GPU; nodes are grouped by the file
  their records belong in, `<catalog-id>.jsonl` (a GPU not in the catalog, or a CPU: its name),
  and one task per file probes the grid on the first node of the group (several GPUs of one
  model would only repeat each other's configs); the other nodes are listed as not probed.
- Resume: each task gets its file's current lines and runs the sweep against a copy of them
  (probes.sweep: configs already there are skipped, its OOMs skip larger configs), streaming each
  new record back; this process appends it to the file on arrival. Every record names its node:
  `host.ray_node_id` beside `host.fingerprint`.
- The code travels with the tasks (Ray's working_dir: this tree, without its measurements), so
  the nodes need the probe's packages (the `probe` extra) and Ray, not this project.
- `--limit-s` counts from this process's start on every node; Ctrl-C cancels the tasks: the
  records that arrived are kept, the configs in progress are not (re-run to resume them).
"""
from __future__ import annotations

import re
import socket
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from advisor import REPO_ROOT, records
from advisor.errors import AdvisorError, shown

# What the tasks do not need of this tree (the measurements travel as each task's file text).
EXCLUDES = [".git", "**/__pycache__", "data/measurements", "data/loadtests", "docs", "tests",
            ".whl"]
CONNECT_TIMEOUT_S = 5.0  # how long --ray's address may take to accept a connection and answer
# An HTTP/2 client's opening (preface and an empty SETTINGS frame): a gRPC server answers with
# its own SETTINGS frame (frame type 4) at once.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


@dataclass
class NodeRun:
    """One task's outcome: its node, file, and the sweep's summary (None if the task failed)."""
    node_id: str
    path: Path
    written: int = 0
    summary: object = None  # probes.sweep.Summary
    failure: str | None = None


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """AdvisorError unless `address` is `auto`, `local`, or a `[ray://]HOST:PORT` that accepts
    a TCP connection within `timeout_s`: Ray itself keeps retrying an address nobody answers."""
    if address in ("auto", "local"):
        return
    match = re.fullmatch(r"(ray://)?([^\s:/]+|\[[0-9a-fA-F:.]+\]):(\d{1,5})", address)
    if not match or not 0 < int(match.group(3)) < 65536:
        raise AdvisorError(f"--ray {shown(address)}: expected auto, local, HOST:PORT or "
                           "ray://HOST:PORT")
    host, port = match.group(2).strip("[]"), int(match.group(3))
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(HTTP2_PREFACE)  # Ray's head and client server speak gRPC (HTTP/2)
            answer = sock.recv(9)
    except OSError as exc:
        raise AdvisorError(f"--ray {shown(address)}: cannot connect to {shown(host)} port {port} "
                           f"within {timeout_s:g} s ({type(exc).__name__}: {exc})") from None
    if len(answer) < 9 or answer[3] != HTTP2_SETTINGS:
        raise AdvisorError(f"--ray {shown(address)}: {shown(host)} port {port} accepts "
                           "connections but does not answer as a Ray cluster (no gRPC)")


def connect(address: str) -> None:
    """Join the cluster at `address` (`auto`, `ray://host:port`, host:port) or start one on
    this machine (`local`); a session already joined (tests) is kept."""
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 runtime_env={"working_dir": str(REPO_ROOT), "excludes": EXCLUDES})
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise AdvisorError(f"--ray {address}: {exc}") from None


def file_key(gpu: dict) -> str:
    """The file a node's records belong in: its catalog id, else its GPU's name as a file name."""
    return gpu.get("catalog_id") or re.sub(r"[^a-z0-9]+", "-", gpu["name"].lower()).strip("-")


def run(address: str, opts, out_dir: Path, gpus: int) -> list[NodeRun]:
    """Sweep `opts.configs` on one node per GPU model of the cluster; the records go to
    `out_dir/<file_key>.jsonl` as they arrive."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    connect(address)
    device = opts.device.type
    need = {"GPU": gpus} if device == "cuda" else {}
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]
             and all(n["Resources"].get(k, 0) >= v for k, v in need.items())]
    if not nodes:
        raise AdvisorError(f"--ray {address}: no alive node has {gpus} GPU(s)")

    def on(node: str, fn, **options):
        return fn.options(num_gpus=need.get("GPU", 0), num_cpus=1,
                          scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                          **options)

    identify = ray.remote(_identify)
    gpus_of = dict(zip(nodes, ray.get([on(n, identify).remote(device) for n in nodes])))
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(file_key(gpus_of[node]), []).append(node)
    for key, members in groups.items():
        print(f"{key}: node {members[0]} probes {out_dir / (key + '.jsonl')}"
              + (f"; same GPU model, not probed: {', '.join(members[1:])}" if members[1:] else ""))

    probe = ray.remote(_probe)
    runs, streams = [], {}  # streams: the tasks still running, by id, with their NodeRun
    for key, (node, *_) in groups.items():
        path = out_dir / f"{key}.jsonl"
        text = path.read_text() if path.exists() else ""
        stream = on(node, probe, num_returns="streaming").remote(
            replace(opts, out=Path(path.name)), text, node)
        runs.append(NodeRun(node, path))
        streams[id(stream)] = (stream, runs[-1])
    try:
        while streams:
            ready, _ = ray.wait([s for s, _ in streams.values()], num_returns=1, timeout=1.0)
            for stream in ready:
                if not _receive(stream, streams[id(stream)][1]):
                    del streams[id(stream)]
    except KeyboardInterrupt:
        for stream, _ in streams.values():
            ray.cancel(stream)
        print("interrupted (Ctrl-C): the tasks were cancelled; their configs in progress are "
              "not recorded. Run the same command again to resume.")
    return runs


def _receive(stream, run: NodeRun) -> bool:
    """Take the next item of a task's stream: a record (appended to its file) or its summary;
    False once the stream has ended (or the task failed)."""
    import ray

    try:
        kind, item = ray.get(next(stream))
    except StopIteration:
        return False
    except ray.exceptions.RayError as exc:
        run.failure = str(exc).strip().splitlines()[-1][:500]
        print(f"node {run.node_id}: the task failed: {run.failure}")
        return False
    if kind == "record":
        records.append_record(run.path, item)
        run.written += 1
    else:
        run.summary = item
    return True


def _identify(device_type: str) -> dict:
    """On a node: the `gpu` block of its records."""
    import torch

    from probes.meters import Nvml
    from probes.runs import environment

    device = torch.device(device_type, 0) if device_type == "cuda" else torch.device("cpu")
    env = environment(device, Nvml.open(device))
    return env["gpu"]


def _probe(opts, text: str, node_id: str):
    """On a node: the sweep against a copy of the file's lines; yields ("record", record) for
    each new record, with the node's Ray id, then ("summary", summary)."""
    import torch

    from probes import sweep

    device = torch.device(opts.device.type, 0) if opts.device.type == "cuda" else opts.device
    with tempfile.TemporaryDirectory(prefix="advisor-probe-") as tmp:
        out = Path(tmp) / opts.out.name
        out.write_text(text)
        summary = sweep.Summary()
        for record in sweep.measured(replace(opts, out=out, device=device), summary):
            yield "record", {**record, "host": {**record["host"], "ray_node_id": node_id}}
        summary.rows = []  # sent one by one already
        yield "summary", summary


def report(runs: list[NodeRun]) -> None:
    for run in runs:
        print(f"{run.path}: {run.written} records from node {run.node_id}"
              + (f"; {run.summary.resumed} configs already there" if run.summary else "")
              + (f"; task failed: {run.failure}" if run.failure else ""))
        if run.summary and run.summary.stopped:
            print(f"  stopped: {run.summary.stopped}; {len(run.summary.not_run)} configs not run")
        if run.summary and run.summary.skipped_oom:
            print(f"  skipped {len(run.summary.skipped_oom)} configs at least as large as one "
                  "that ran out of memory")

