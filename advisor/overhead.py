"""What a serving endpoint adds to each request's latency beyond the planner's batch wait and
batch service time: routing to a replica, PNG encoding, the answer's way back, HTTP. Measured by
`advisor loadtest --url` against `advisor serve` (the `endpoint` block of the HTTP runs in
data/loadtests/), per resolution; the planner adds it to every request's latency
(`queueing.Service.overhead_s`), never to the GPU's busy time.

Which figure a resolution gets, first that applies:
1. measured at that resolution on that GPU (the median over the runs, weighted by requests);
2. measured at that resolution on another GPU (the work is the host's, not the GPU's);
3. a line in megapixels through the medians measured at other resolutions (one resolution
   measured: its figure);
4. `DEFAULT_S`, an assumption, where nothing was measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from advisor.contract import shape_label
from advisor.errors import AdvisorError
from advisor.loadtest.results import LOADTESTS_DIR, load

DEFAULT_S = 0.05  # assumed where no endpoint was measured: say so wherever it is used


@dataclass(frozen=True)
class Point:
    gpu: str
    height: int
    width: int
    seconds: float  # median overhead of the run at this resolution
    requests: int
    source: str  # the results file


@lru_cache(maxsize=4)
def points(folder: Path = LOADTESTS_DIR) -> tuple[Point, ...]:
    """Every HTTP run's measured overhead per resolution in `folder`."""
    out = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else ():
        try:
            doc = load(path)
        except AdvisorError:
            continue  # not a results file (the dashboard and `loadtest` report these)
        for label, block in ((doc.get("endpoint") or {}).get("by_resolution") or {}).items():
            width, height = (int(x) for x in label.split("x"))  # labels are width x height
            out.append(Point(str(doc.get("gpu")), height, width,
                             float(block["overhead_median_s"]), int(block["requests"]),
                             path.name))
    return tuple(out)


def overhead_s(gpu: str, height: int, width: int,
               measured: tuple[Point, ...] | None = None) -> tuple[float, str]:
    """The overhead of one request at `height` x `width` served on `gpu`, and its basis."""
    return _overhead_s(gpu, height, width, points() if measured is None else measured)


@lru_cache(maxsize=1024)  # the planner asks per candidate, resolution and GPU
def _overhead_s(gpu: str, height: int, width: int,
                measured: tuple[Point, ...]) -> tuple[float, str]:
    same = [p for p in measured if (p.height, p.width) == (height, width)]
    for chosen, where in (([p for p in same if p.gpu == gpu], "on this GPU"),
                          (same, f"on {', '.join(sorted({p.gpu for p in same}))}")):
        if chosen:
            weights = np.array([p.requests for p in chosen], dtype=float)
            value = float(np.average([p.seconds for p in chosen], weights=weights))
            files = ", ".join(sorted({p.source for p in chosen}))
            return value, f"measured {where} ({files})"
    if measured:
        mp = np.array([p.height * p.width / 1e6 for p in measured])
        s = np.array([p.seconds for p in measured])
        if len(set(mp)) == 1:
            return float(np.median(s)), ("measured at "
                                         f"{shape_label(measured[0].height, measured[0].width)}")
        slope, intercept = np.polyfit(mp, s, 1)
        return (max(0.0, float(intercept + slope * height * width / 1e6)),
                "a line in megapixels through the measured resolutions")
    return DEFAULT_S, "assumed (no endpoint measured)"


def describe(gpu: str, resolutions) -> str:
    """The overheads of a mix in words, for a plan's assumptions."""
    parts = []
    for r in resolutions:
        value, basis = overhead_s(gpu, r.height, r.width)
        parts.append(f"{shape_label(r.height, r.width)} {value:.3f} s ({basis})")
    return "; ".join(parts)
