"""The `published` split: trusted third-party measurements (advisor.published) against models
fitted without them. Only the points of the stack this tool models are scored; the others are
listed apart with their ratio to the predicted time. Each point's unprobed-architecture term
comes from the other points of its family (leave one out)."""
from __future__ import annotations

import math

import numpy as np

from advisor.intervals import ArchitectureWidth, family_of, published_families
from advisor.published import MODELLED_STACK


def published_residuals(models, points: list) -> list[dict]:
    """Each trusted published point on a catalog GPU against the models' prediction: end-to-end
    figures against the predicted total per image, per-step figures against the predicted
    denoise step per image; `log_ratio` is log(measured / predicted), `unprobed_architecture`
    whether no GPU of the point's architecture was probed, `modelled_stack` whether the point
    was measured with the software the advisor models (advisor.published.MODELLED_STACK: only
    those are misses; the prediction is always the diffusers one)."""
    scored = [p for p in points if p.scored]
    probed = {models.specs[g].architecture for g in models.probed}
    rows = []
    for point, pred in zip(scored, models.predict_many([(p.gpu, p.config) for p in scored])):
        batch, lat = point.config.batch, pred.latency
        if point.seconds_per_image is not None:
            what, measured, predicted = "s/image", point.seconds_per_image, lat.total_s / batch
        else:
            what, measured = "s/forward", point.seconds_per_forward
            predicted = lat.denoise_step_s / batch
        lo, hi = (predicted * v / lat.total_s * batch for v in lat.interval_s)
        rows.append({"id": point.id, "gpu": point.gpu, "config": point.config.label(),
                     "software": point.software, "stack": point.stack,
                     "stack_version": point.stack_version,
                     "modelled_stack": point.modelled_stack, "figure": what, "measured": measured,
                     "predicted": predicted, "interval": [lo, hi],
                     "log_ratio": math.log(measured / predicted),
                     "error_pct": 100 * (predicted - measured) / measured,
                     "unprobed_architecture": models.specs[point.gpu].architecture not in probed,
                     "source": pred.source, "interval_basis": lat.basis,
                     "published_source": point.source})
    return rows


def published_split(models, points: list) -> dict:
    """The published points against models fitted without them (advisor.published): MAPE per
    GPU and overall, and interval coverage, of the points measured with the software the
    advisor models (the diffusers pipeline on PyTorch) only. A shipped model's interval for a
    GPU of an architecture never probed has an architecture term from these points of its
    family (intervals.ArchitectureWidth, advisor.calibration); here each point's term comes from
    the other points only (leave one out), so the coverage says what a GPU nobody measured
    gets. Trusted points of other software (ComfyUI, stable-diffusion.cpp, SGLang, ...)
    are listed apart in `other_software` with their ratio to the predicted diffusers time: a
    figure is a (GPU, software) pair and stacks differ by 2x on one GPU, so they are no misses,
    count in no MAPE or coverage and widen no interval."""
    residuals = published_residuals(models, points)
    rows = [r for r in residuals if r["modelled_stack"]]
    for i, row in enumerate(rows):
        if row["unprobed_architecture"]:
            _leave_one_out(row, models, [r for j, r in enumerate(rows) if j != i])
        row["inside"] = row["interval"][0] <= row["measured"] <= row["interval"][1]
    other = [{key: r[key] for key in ("id", "gpu", "config", "stack", "stack_version",
                                      "software", "figure", "measured", "predicted",
                                      "log_ratio", "published_source")}
             | {"ratio": r["measured"] / r["predicted"]}
             for r in residuals if not r["modelled_stack"]]
    ape = lambda rs: float(np.mean([abs(r["error_pct"]) for r in rs])) if rs else None
    return {
        "description": "trusted third-party measurements (data/published/) with the "
                       f"software this tool models ({MODELLED_STACK}) on GPUs in the "
                       "catalog, never used for fitting; models fitted on every record; each "
                       "interval's architecture term from the other points of its family only "
                       "(leave one out)",
        "n": len(rows), "points_total": len(points),
        "untrusted": sum(not p.trusted for p in points),
        "modelled_stack": MODELLED_STACK,
        "mape": ape(rows), "by_gpu": {g: ape([r for r in rows if r["gpu"] == g])
                                      for g in sorted({r["gpu"] for r in rows})},
        "coverage": 100 * float(np.mean([r["inside"] for r in rows])) if rows else None,
        "rows": rows,
        "other_software_description": "trusted points measured with other software, against "
                                      f"the predicted {MODELLED_STACK} time (ratio = measured / "
                                      "predicted); in no MAPE or coverage",
        "n_other_software": len(other),
        "other_software": other,
    }


def _leave_one_out(row: dict, models, others: list[dict]) -> None:
    """The row's interval with its architecture term (in quadrature with the rest, in log
    space) set from the other points of its family, as a GPU nobody measured gets it."""
    spec = models.specs[row["gpu"]]
    family = family_of(spec)
    now = models.architecture_width(spec).half_width
    loo = ArchitectureWidth.of(family, published_families(others, models.specs).get(family, []))
    p = row["predicted"]

    def swap(x: float) -> float:
        return math.copysign(math.sqrt(max(x * x - now ** 2 + loo.half_width ** 2, 0.0)), x)

    row["interval"] = [p * math.exp(swap(math.log(v / p))) for v in row["interval"]]
    row["interval_basis"] += f" (leave one out: {loo.words(spec.architecture)})"
