"""The planner's batching policy one batch at a time, for a live load test and for a replay.

`advisor.queueing` runs the policy as a fast closed loop over a whole simulated stream. A load
test needs it step by step: it has to run each batch on a real (or fake) service and learn when
the GPU actually frees. `Dispatcher` is that step: given the arrival schedule and the time the
GPU frees, it names the next batch exactly as `queueing._run` forms it (one dispatcher, batches
of one resolution for the oldest waiting request, ready at `max_batch` arrivals of its class or
`window_s` after the oldest, whichever is first, never before the previous batch went out; the
batch takes every request of its class that has arrived by its start, up to `max_batch`).
tests/test_loadtest.py checks `replay` against `queueing._run` on the same arrivals.

The schedule is known in advance (a load generator's own arrivals), so "wait until `max_batch`
requests have arrived" is the arrival time of the `max_batch`-th one; no batch ever starts before
its last request arrived, so the live loop behaves as an online dispatcher would.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Batch:
    resolution: int  # class index
    start_s: float  # when it leaves the dispatcher (the GPU is free then)
    requests: tuple[int, ...]  # request indices, in arrival order


class Dispatcher:
    """The next batch for arrivals `times_s` (ascending) of classes `classes`."""

    def __init__(self, times_s: Sequence[float], classes: Sequence[int], n_classes: int,
                 max_batch: int, window_s: float):
        if max_batch < 1 or window_s < 0:
            raise ValueError(f"max_batch >= 1 and window_s >= 0, got {max_batch}, {window_s}")
        classes = np.asarray(classes, dtype=int)
        times = np.asarray(times_s, dtype=float)
        self.max_batch, self.window_s = max_batch, window_s
        self.index = [np.flatnonzero(classes == c).tolist() for c in range(n_classes)]
        self.padded = [times[i].tolist() + [math.inf] * max_batch for i in self.index]
        self.heads = [0] * n_classes
        self.dispatched = 0.0

    def pending(self) -> int:
        return sum(len(i) - h for i, h in zip(self.index, self.heads))

    def next(self, free_s: float) -> Batch | None:
        """The next batch when the GPU frees at `free_s`; None when every request was served."""
        oldest = [a[h] for a, h in zip(self.padded, self.heads)]
        first = min(oldest)
        if first == math.inf:
            return None
        c = oldest.index(first)
        arrivals, head, last = self.padded[c], self.heads[c], self.max_batch - 1
        fill = arrivals[head + last]
        ready = max(min(first + self.window_s, fill), self.dispatched)
        start = max(free_s, ready)
        self.dispatched = start
        end = head + self.max_batch if fill <= start else bisect_right(
            arrivals, start, head, head + last)
        self.heads[c] = end
        return Batch(c, start, tuple(self.index[c][head:end]))


def replay(times_s: Sequence[float], classes: Sequence[int], n_classes: int, max_batch: int,
           window_s: float, service_s: Callable[[int, int, int], float], n_gpus: int = 1):
    """Start, finish and batch size of every request (arrays in request order) when the batches
    run for `service_s(resolution, size, first_request)` seconds on `n_gpus` GPUs."""
    n = len(times_s)
    start, finish, size = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=int)
    dispatcher = Dispatcher(times_s, classes, n_classes, max_batch, window_s)
    free = [0.0] * n_gpus
    while (batch := dispatcher.next(free[0])) is not None:
        done = batch.start_s + service_s(batch.resolution, len(batch.requests), batch.requests[0])
        heapq.heapreplace(free, done)
        rows = list(batch.requests)
        start[rows], finish[rows], size[rows] = batch.start_s, done, len(rows)
    return start, finish, size
