"""What probing a GPU never probed would take: the grid to run, the command, and about how many
GPU minutes, from how long that grid took on the probed GPUs.

The planner offers it beside every option sized on transferred figures: one probe run of the
profile grid turns the GPU's figures from transferred into fitted (and gives the transfer one
more reference), which settles the gap between the option's point and upper-basis fleets.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from advisor.contract import Prediction
from advisor.records import machine_of

PROBE_GRID = "data/grids/profile.yaml"
PROBE_GRID_NAME = "profile"  # the `grid` its records carry
PROBE_COMMAND = f"advisor probe --grid {PROBE_GRID} --profile --weights synthetic"


@dataclass(frozen=True)
class ProbeSuggestion:
    gpu: str
    command: str
    grid: str
    gpu_minutes: float | None  # None: no run of the grid in the data to scale from
    basis: str  # how gpu_minutes was estimated


def grid_runs(records: list[dict], grid: str = PROBE_GRID_NAME) -> list[dict]:
    """Each probe run of `grid` in the records, a run being one GPU and machine: its GPU, the
    seconds from its first record to its last, and its record count."""
    stamps: dict[tuple, list[dt.datetime]] = {}
    for r in records:
        if r.get("grid") != grid:
            continue
        key = (r["gpu"]["catalog_id"], machine_of(r) or r.get("_source", "").split(":")[0])
        try:
            stamps.setdefault(key, []).append(dt.datetime.fromisoformat(r["timestamp"]))
        except (KeyError, TypeError, ValueError):
            continue
    return [{"gpu": gpu, "seconds": (max(t) - min(t)).total_seconds(), "records": len(t)}
            for (gpu, _), t in sorted(stamps.items()) if len(t) > 1]


def probe_suggestion(models, gpu, prediction: Prediction) -> ProbeSuggestion:
    """The probe that would settle a transferred option on `gpu`: the command and grid, and
    about how many GPU minutes it takes there, scaled from the grid's median run on a probed
    GPU by the predicted time of `prediction`'s config (batch 1) there and on `gpu`."""
    runs = grid_runs(models.records)
    if not runs:
        return ProbeSuggestion(gpu.id, PROBE_COMMAND, PROBE_GRID, None,
                               f"no run of {PROBE_GRID} in the data to scale from")
    seconds = float(np.median([r["seconds"] for r in runs]))
    ref = max({r["gpu"] for r in runs}, key=lambda g: sum(r["gpu"] == g for r in runs))
    there = models.predict(ref, prediction.config).latency.total_s
    ratio = prediction.latency.total_s / there
    basis = (f"the median {PROBE_GRID} run of {len(runs)} ({seconds / 60:.1f} min, first to "
             f"last record) x {ratio:.1f}, the predicted {prediction.config.label()} time on "
             f"{gpu.id} over {ref}'s; plus loading the pipeline, and less where large configs do "
             "not fit")
    return ProbeSuggestion(gpu.id, PROBE_COMMAND, PROBE_GRID, seconds * ratio / 60, basis)
