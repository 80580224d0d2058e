"""The planner's batching policy, online (asyncio): what `advisor.queueing` simulates and
`advisor.dispatch` replays, run on live requests in one replica.

One dispatcher, one batch at a time. Requests wait by key (one resolution and step count a
batch). The batch of the oldest waiting request is ready when `max_batch` requests of its key
wait, or `window_s` after that oldest request arrived; once the previous batch is done it takes
every request of its key that has arrived, up to `max_batch`.

Ray Serve's own `@serve.batch` differs under load, which is why the replica does not use it:
its window starts when its batching loop takes the first request, and it forms the next batch
while the previous one runs, so a batch holds only what arrived within one window, not
everything that queued behind a running batch; batches are smaller than the planner assumes and
the queue grows sooner (docs/serving.md).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque

from advisor.serve.api import ApiError


class PlannerBatcher:
    """`await submit(key, item)` returns `run_batch(key, items)[i]` for its item, or raises
    what the batch raised. At most `limit` requests wait or run (ApiError 503 beyond)."""

    def __init__(self, run_batch, max_batch: int, window_s: float, limit: int):
        self.run_batch, self.max_batch, self.window_s = run_batch, max_batch, window_s
        self.limit = limit
        self.queues: dict = {}  # key -> deque of (arrival, item, future)
        self.pending = 0
        self.wake: asyncio.Event | None = None
        self.task: asyncio.Task | None = None

    async def submit(self, key, item):
        if self.pending >= self.limit:
            raise ApiError(503, f"queue full: {self.pending} requests wait or run on this replica "
                                f"(limit {self.limit})", retry_after_s=1)
        if self.task is None or self.task.done():
            self.wake = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._loop())
        future = asyncio.get_running_loop().create_future()
        self.queues.setdefault(key, deque()).append((time.monotonic(), item, future))
        self.pending += 1
        self.wake.set()
        try:
            return await future
        finally:
            self.pending -= 1

    def _oldest(self):
        """The key of the oldest waiting request and its arrival, dropping cancelled ones."""
        best = None
        for key, queue in self.queues.items():
            while queue and queue[0][2].done():  # the caller gave up (timeout, disconnect)
                queue.popleft()
            if queue and (best is None or queue[0][0] < best[1]):
                best = (key, queue[0][0])
        return best

    async def _loop(self) -> None:
        while True:
            oldest = self._oldest()
            if oldest is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            key, arrived = oldest
            queue = self.queues[key]
            wait_s = arrived + self.window_s - time.monotonic()
            if len(queue) < self.max_batch and wait_s > 0:
                self.wake.clear()  # an arrival may fill the batch before the window ends
                try:
                    await asyncio.wait_for(self.wake.wait(), wait_s)
                except asyncio.TimeoutError:
                    pass
                continue
            batch = []
            while queue and len(batch) < self.max_batch:
                entry = queue.popleft()
                if not entry[2].done():
                    batch.append(entry)
            if batch:
                await self._run(key, batch)

    async def _run(self, key, batch) -> None:
        try:
            results = await self.run_batch(key, [item for _, item, _ in batch])
        except Exception as exc:  # every request of a failed batch fails with its error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
