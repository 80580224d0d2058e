"""`advisor loadtest`: serve an arrival stream the way the planner assumes a replica serves it,
measure every request, and put the planner's predictions beside the measurement.

- `config`: what a run serves (resolution mix, max batch, window, rate, bounds), checked.
- `arrivals`: Poisson arrivals at a rate, or a trace file.
- `run`: the live loop (one dispatcher, `advisor.dispatch`, on a pluggable service: the real
  pipeline from `probes/serve.py`, a fake one with known timings, an HTTP endpoint).
- `report`: summaries, the two predictions (same arrivals; steady state), the soak's slopes.
- `results`: the results file, written atomically and read back with validation.
"""
