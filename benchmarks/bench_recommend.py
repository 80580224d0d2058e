"""Time a full-catalog recommendation for the three-resolution mix of examples/request.yaml.

    python benchmarks/bench_recommend.py [--data DIR] [--repeats N]

Every runnable catalog GPU is searched: GPUs without a catalog cloud price get one in the request
(USD 0.02 per GB of memory per hour, a placeholder so that none is skipped for want of a price).
Each run starts with empty simulation caches, so it pays for every simulation it needs. The
fitted models come from --data (default: the shipped measurements); when none can be fitted the
benchmark says so and uses the test double in tests/fake_models.py.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advisor import MEASUREMENTS_DIR  # noqa: E402
from advisor.catalog import load_catalog  # noqa: E402
from advisor.errors import AdvisorError  # noqa: E402
from advisor.plan import recommend  # noqa: E402
from advisor.queueing import _arrivals, _served_cached, simulate_cached  # noqa: E402
from advisor.request import Request  # noqa: E402

PLACEHOLDER_USD_PER_GB_HOUR = 0.02


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MEASUREMENTS_DIR), help="measurements folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    catalog = load_catalog()
    models, which = _models(args.data, catalog)
    prices = {g.id: round(PLACEHOLDER_USD_PER_GB_HOUR * g.memory_gb, 2)
              for g in catalog.gpus if not g.cloud_usd_per_hour}
    request = Request.from_yaml(ROOT / "examples" / "request.yaml", overrides={
        "candidates.gpus": "all",
        "deployment.mode": "cloud", "deployment.cloud.usd_per_gpu_hour": prices})

    times, cpu = [], []
    for _ in range(args.repeats):
        simulate_cached.cache_clear()
        _served_cached.cache_clear()
        _arrivals.cache_clear()
        start, start_cpu = time.perf_counter(), time.process_time()
        plan = recommend(request, models, catalog)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    best = plan.best()
    print(f"models: {which}")
    print(f"request: examples/request.yaml, {len(request.resolutions)} resolutions, "
          f"{plan.search['gpus']} GPUs searched, {plan.search['predictions']} predictions, "
          f"{plan.search['candidates']} candidates, {plan.search['candidates_simulated']} sized "
          f"by {plan.search['simulations']} simulations ({request.simulation.describe()})")
    lossy = plan.search.get("lossy")
    if lossy:
        print(f"lossy alternatives ({', '.join(a.precision for a in plan.lossy_alternatives)}):"
              f" {lossy['predictions']} predictions, {lossy['candidates']} candidates, "
              f"{lossy['candidates_simulated']} sized by {lossy['simulations']} simulations")
    if best:
        print(f"best: {best.fleet.total_gpus} x {best.gpu} batch {best.max_batch}, "
              f"${best.cost.usd_per_month:,.0f}/month")
    print(f"runs, wall clock (s): {', '.join(f'{t:.3f}' for t in times)}")
    print(f"runs, CPU time of this process (s): {', '.join(f'{t:.3f}' for t in cpu)}")
    print(f"median {statistics.median(times):.3f} s wall clock, {statistics.median(cpu):.3f} s "
          f"CPU; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          "(other processes slow the wall clock)")
    return 0


def _models(data: str, catalog):
    from advisor.cache import load_models

    try:
        models = load_models(data)
        return models, f"fitted models {models.model_version} from {data}"
    except AdvisorError as exc:
        from tests.fake_models import FakeModels

        return FakeModels(catalog), (f"TEST DOUBLE tests/fake_models.py (no fitted models: "
                                     f"{exc})")


if __name__ == "__main__":
    sys.exit(main())
