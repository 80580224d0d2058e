"""A sweep's progress: what a config will take (`Forecast`, for the ETA and the time limit), the
progress bar (`Progress`), and Ctrl-C handling (`Interrupt`)."""
from __future__ import annotations

import signal
import sys
import time

from tqdm import tqdm

from advisor import workload
from advisor.contract import Config, cfg_passes
from probes import caps

FIRST_LOAD_GUESS_S = 30.0  # until a load has been timed
COMPILE_GUESS_S = 60.0  # regional compile of a new shape, until one has been timed


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
