"""The arrival schedule of a load test: Poisson at a rate, or a trace file.

A trace is CSV or whitespace-separated text, one request a line: `TIME_S WIDTHxHEIGHT` (times in
seconds, ascending, from any origin; `#` starts a comment). Its resolutions become the mix.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advisor.errors import AdvisorError, shown
from advisor.inputs import read_text
from advisor.loadtest.config import LoadConfig, Resolution

MAX_TRACE_BYTES = 50_000_000


@dataclass(frozen=True)
class Schedule:
    times_s: np.ndarray  # ascending, from 0 (the first arrival may be later)
    classes: np.ndarray  # index into the config's resolutions
    source: str  # "poisson rate R, seed S" or the trace file

    def __len__(self) -> int:
        return len(self.times_s)


def poisson(config: LoadConfig) -> Schedule:
    """Arrivals at `rate_per_s` over warm-up + duration, classes drawn from the mix shares; cut
    at `max_requests`."""
    rate, span = config.rate_per_s, config.warmup_s + config.duration_s
    rng = np.random.default_rng(config.seed)
    expected = rate * span  # finite: LoadConfig bounds the rate and the span
    n = int(min(expected + 10 * expected ** 0.5 + 10, config.max_requests))
    times = np.cumsum(rng.exponential(1.0 / rate, n))
    times = times[times < span][: config.max_requests]
    classes = rng.choice(len(config.shares), size=n, p=config.shares)[: len(times)]
    return Schedule(times, classes, f"poisson {rate:g}/s, seed {config.seed}")


def read_trace(path: str | Path, max_requests: int) -> tuple[np.ndarray, list[str]]:
    """(times from 0, resolution labels) of a trace file; AdvisorError naming file and line."""
    text = read_text(Path(path), "trace", MAX_TRACE_BYTES)
    times, labels = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line or line.lower().startswith(("time", "t_s", "arrival")):
            continue
        parts = [p for p in re.split(r"[,\s]+", line) if p]
        where = f"{path}:{number}"
        if len(parts) != 2 or not re.fullmatch(r"\d{1,9}x\d{1,9}", parts[1]):
            raise AdvisorError(f"{where}: expected 'TIME_S WIDTHxHEIGHT', found {shown(line)}")
        try:
            t = float(parts[0])
        except ValueError:
            raise AdvisorError(f"{where}: the time {shown(parts[0])} is not a number") from None
        if not np.isfinite(t) or (times and t < times[-1]):
            raise AdvisorError(f"{where}: times must be finite and ascending, found {t}")
        times.append(t)
        labels.append(parts[1])
        if len(times) >= max_requests:
            break
    if not times:
        raise AdvisorError(f"{path}: the trace holds no requests")
    return np.asarray(times) - times[0], labels


def trace_resolutions(labels: list[str]) -> tuple[Resolution, ...]:
    """The mix of a trace: each resolution with its share of the requests, in first-seen order."""
    order = list(dict.fromkeys(labels))
    sizes = {label: tuple(map(int, label.split("x"))) for label in order}  # width x height
    return tuple(Resolution(height=sizes[label][1], width=sizes[label][0],
                            share=labels.count(label) / len(labels)) for label in order)


def from_trace(times: np.ndarray, labels: list[str], config: LoadConfig, path) -> Schedule:
    index = {r.label: i for i, r in enumerate(config.resolutions)}
    return Schedule(times, np.asarray([index[x] for x in labels], dtype=int), f"trace {path}")
