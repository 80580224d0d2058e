"""Memory caps: run the pipeline as on a smaller card, and search the smallest cap a config runs
under.

`torch.cuda.set_per_process_memory_fraction` caps what torch's caching allocator may reserve.
Over the cap the allocator frees its cached blocks and retries before it raises out-of-memory, as
it does when a smaller card is full, so a config that runs under a cap of X GiB runs on a card
that leaves X GiB to torch (its capacity less the CUDA context). The latency measured under a cap
is still the H200's.

The search (`search`) keeps the pipeline loaded and changes the cap between trials: an uncapped
trial gives the upper bound (its peak reserved memory plus a margin); the weights resident before
it are the lower bound (no call runs in less); bisection then halves the interval until it is
RESOLUTION_GIB wide. A trial empties torch's cache, then makes TRIAL_CALLS pipeline calls of
TRIAL_STEPS steps in a row: every stage runs in a one-step call and every step allocates alike,
but the second call meets the blocks the first one left, as each call of a serving process does,
and needs more. (Single calls after an empty cache ran under caps up to 1.25 GiB lower than the
measurement's consecutive calls: H200, 768x768 b4 at 23.0 GiB, not below 24.25 GiB.)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from probes.measure import Runner, failed_stage, prepare
from probes.pipeline import Loaded, free_memory, is_oom, recover

GIB = 2**30
RESOLUTION_GIB = 0.25  # the search ends when the smallest cap is known within this
STEP_GIB = 0.125  # trial caps are multiples of this, for readable records
MARGIN_GIB = 0.5  # above the uncapped peak reserved: a cap that surely runs
TRIAL_STEPS = 1
TRIAL_CALLS = 2
# Trials a search makes, for the forecast: the uncapped one and a bisection of ~6 GiB (weights
# resident to peak) down to RESOLUTION_GIB.
SEARCH_TRIALS = 6


class Abandoned(Exception):
    """The search was stopped (Ctrl-C, time limit) before it ended; nothing is recorded."""


@dataclass(frozen=True)
class Trial:
    """One call under a cap: `status` ok or oom, and the stage that ran out of memory."""
    cap_gib: float
    status: str
    failed_stage: str | None = None

    def record(self) -> dict:
        return asdict(self)


@dataclass
class Search:
    """A search's answer: the smallest cap found, the cap known to run, and every trial."""
    min_cap_gib: float
    high_gib: float
    trials: list[Trial]


def device_gib(device: torch.device) -> float:
    return torch.cuda.get_device_properties(device).total_memory / GIB


def set_memory_cap(device: torch.device, cap_gib: float | None) -> None:
    """Cap what torch may reserve on `device` at `cap_gib` GiB; None: the whole device. A no-op
    on CPU without a cap."""
    if device.type != "cuda":
        if cap_gib is not None:
            raise ValueError("a memory cap needs a CUDA device")
        return
    fraction = 1.0 if cap_gib is None else min(1.0, cap_gib / device_gib(device))
    torch.cuda.set_per_process_memory_fraction(fraction, device)


def bisect(trial: Callable[[float], Trial], low_gib: float, high_gib: float,
           before: Callable[[float], None] = lambda cap: None) -> tuple[float, list[Trial]]:
    """The smallest cap under which `trial` runs, within RESOLUTION_GIB, and the trials made.
    `low_gib` is taken to fail and `high_gib` to run; `before(cap)` is called before each trial
    (it may raise Abandoned)."""
    trials = []
    while high_gib - low_gib > RESOLUTION_GIB:
        cap = round((low_gib + high_gib) / 2 / STEP_GIB) * STEP_GIB
        before(cap)
        trials.append(trial(cap))
        if trials[-1].status == "ok":
            high_gib = cap
        else:
            low_gib = cap
    return high_gib, trials


def search(loaded: Loaded, config, device: torch.device,
           before: Callable[[float], None] = lambda cap: None) -> Search:
    """The smallest cap (within RESOLUTION_GIB) under which a trial of `config` runs; the first
    trial is the uncapped one, at the device's size. An uncapped trial that fails raises (the
    config does not fit the device); so does any failure other than out-of-memory. The cap is
    left at the smallest one found."""
    prepare(loaded, config)
    runner = Runner(loaded, config, device, nvml=None)
    whole = device_gib(device)
    before(whole)
    set_memory_cap(device, None)
    free_memory()
    resident_gib = torch.cuda.memory_allocated(device) / GIB
    calls = [runner.call(TRIAL_STEPS) for _ in range(TRIAL_CALLS)]
    reserved_gib = max(call.peak_mb("peak_reserved_mb") for call in calls) / 1024
    high = min(whole, math.ceil((reserved_gib + MARGIN_GIB) / STEP_GIB) * STEP_GIB)
    found, trials = bisect(lambda cap: _capped_call(runner, loaded, device, cap),
                           resident_gib, high, before)
    set_memory_cap(device, found)
    return Search(found, high, [Trial(round(whole, 2), "ok")] + trials)


def _capped_call(runner: Runner, loaded: Loaded, device: torch.device, cap_gib: float) -> Trial:
    set_memory_cap(device, cap_gib)
    free_memory()
    try:
        for _ in range(TRIAL_CALLS):
            runner.call(TRIAL_STEPS)
        return Trial(cap_gib, "ok")
    except Exception as exc:  # noqa: BLE001 - out of memory is an answer; anything else raises
        if not is_oom(exc):
            raise
        stage = failed_stage(exc)
    recover(loaded)  # outside the except block: the exception no longer holds the call's tensors
    return Trial(cap_gib, "oom", stage)
