"""Claim checker: is "GPU X makes Y images/s at this size" physically possible, and is it likely?

Three independent checks, each with its arithmetic in the result:
- compute: FLOPs per image (advisor.workload: text encode + denoise steps + VAE decode) x the
  claimed images/s is the implied TFLOP/s; above the catalog's dense peak for the precision it
  is impossible, above the best model-FLOPs utilization (MFU) any measured config reached it is
  implausible.
- memory: the weights must live somewhere. Without offload all of them are resident; model
  offload keeps one component (the transformer, the largest) resident and moves every component
  over the host link once per batch; sequential offload keeps almost nothing resident and streams
  the transformer's weights once per step. A claim that no (precision, offload) combination can
  explain, within the memory and within the claimed time per batch, is impossible.
- prediction: the fitted models' latency interval for the settings that explain the memory
  (precision and offload, any attention and compile setting) and whose predicted peak fits the
  memory budget: memory and speed must be possible together, in one setting. Far outside that
  interval, or no such setting, is implausible. Where only a quantized (lossy) setting makes the
  claimed memory or speed possible, the reasons say which, with the quality caveat. Without
  fitted models, the reasons say so.
"""
from __future__ import annotations

from advisor import workload
from advisor.contract import ATTENTIONS, CFG_GUIDANCE_SCALE, OFFLOADS, PRECISIONS, \
    QUALITY_CAVEAT, QUANTIZATIONS, Config, Quantization, compute_precision
from advisor.coverage import Probed, caveats
from advisor.errors import AdvisorError
from advisor.features import PCIE_EFFICIENCY, pcie_gbs
from advisor.inputs import is_number
from advisor.search import not_offered

# MFU ceiling when no measured config is available: about the best dense-GEMM efficiency
# cuBLAS reaches on large bf16 matrices; a whole pipeline (attention, norms, VAE) stays below it.
ASSUMED_MFU_CEILING = 0.70
MEASURED_MFU_TOLERANCE = 1.10  # a claim within 10% of the best measured MFU is not flagged
FASTER_THAN_PREDICTED = 1.5  # per-image time below the interval's low end / this: implausible
SLOWER_THAN_PREDICTED = 3.0  # above the slowest setting's high end x this: implausible
# A claim may name any precision the advisor models (advisor.contract.PRECISIONS), or one of
# these that published claims use and nothing here probes or predicts: they count in the compute
# and memory checks only.
UNMODELLED = {
    "int8": Quantization("int8", "int8", None, "int8 weights and activations (W8A8), int8 "
                         "matmuls at the catalog's dense int8 rate: not probed here"),
    "int4": Quantization("int4", "bf16", None, "4-bit weights dequantized for bf16 matmuls "
                         "(weight-only, e.g. GGUF Q4): not probed here"),
}
CLAIM_PRECISIONS = PRECISIONS + tuple(UNMODELLED)
VERDICTS = ("plausible", "implausible", "impossible")


def _weights(precision: str) -> str:
    """How `precision` stores its weights: an advisor.workload WEIGHT_BITS key."""
    kind = QUANTIZATIONS.get(precision) or UNMODELLED.get(precision)
    return kind.weights if kind else "fp32" if precision == "fp32-tf32" else precision


def _rate(precision: str) -> str:
    """The catalog dense-TFLOPS key the matmuls of `precision` run at."""
    return UNMODELLED[precision].compute if precision in UNMODELLED \
        else compute_precision(precision)


# Every way of storing the weights, for a claim that does not name its precision.
WEIGHT_STORAGE = tuple(dict.fromkeys(map(_weights, CLAIM_PRECISIONS)))


def check_claim(gpu, height: int, width: int, *, steps: int = 9, batch: int = 1,
                seconds_per_image: float | None = None, images_per_second: float | None = None,
                vram_gb: float | None = None, precision: str | None = None, cfg: bool = False,
                caption_tokens: int = 64, models=None, models_note: str = "",
                mfu_ceiling: tuple[float, str] | None = None) -> dict:
    """Verdict, reasons and arithmetic for one claim about catalog GPU `gpu`.

    Exactly one of `seconds_per_image` / `images_per_second`. `precision` None means the claim
    does not say: every precision the card has counts. `mfu_ceiling` is (best measured MFU,
    where it comes from); None uses ASSUMED_MFU_CEILING. `models` None skips the prediction,
    with `models_note` saying why.
    """
    ips = _throughput(seconds_per_image, images_per_second)
    _check_inputs(batch, vram_gb, precision)
    summary = workload.workload_summary(height, width, batch=batch, steps=steps,
                                        caption_tokens=caption_tokens, cfg=cfg)
    batch_s = batch / ips
    findings: list[tuple[str, str]] = []  # (verdict, reason)
    compute = _compute(gpu, summary, ips, precision, mfu_ceiling, findings)
    memory = _memory(gpu, summary, batch_s, vram_gb, precision, steps, findings)
    claim = {"gpu": gpu.id, "gpu_name": gpu.name, "height": height, "width": width,
             "steps": steps, "batch": batch, "precision": precision, "cfg": cfg,
             "caption_tokens": caption_tokens, "images_per_second": ips,
             "seconds_per_image": 1 / ips, "seconds_per_batch": batch_s, "vram_gb": vram_gb}
    prediction = _modelled_speed(models, models_note, gpu, claim, memory, findings) \
        if memory["memory_explanations"] else None
    verdict = max((v for v, _ in findings), key=VERDICTS.index, default="plausible")
    if verdict == "plausible":
        findings.insert(0, ("plausible", "within the card's compute and memory limits and "
                                         "consistent with the other checks below"))
    return {
        "verdict": verdict,
        "reasons": [reason for _, reason in findings],
        "claim": claim,
        "arithmetic": {**compute, **memory},
        "prediction": prediction,
        "sources": {"flops": summary["source"],
                    "peak": f"catalog entry {gpu.id}, dense_tflops (no sparsity)"},
    }


def _throughput(seconds_per_image, images_per_second) -> float:
    if (seconds_per_image is None) == (images_per_second is None):
        raise AdvisorError("give exactly one of --seconds-per-image or --images-per-second")
    value = images_per_second if seconds_per_image is None else seconds_per_image
    name = "--images-per-second" if seconds_per_image is None else "--seconds-per-image"
    if not (is_number(value) and value > 0):
        raise AdvisorError(f"{name}: expected a finite number > 0, got {value!r}")
    return images_per_second if seconds_per_image is None else 1 / seconds_per_image


def _check_inputs(batch, vram_gb, precision) -> None:
    if not (isinstance(batch, int) and batch >= 1):
        raise AdvisorError(f"--batch: expected an integer >= 1, got {batch!r}")
    if vram_gb is not None and not (is_number(vram_gb) and vram_gb > 0):
        raise AdvisorError(f"--vram-gb: expected a finite number > 0, got {vram_gb!r}")
    if precision is not None and precision not in CLAIM_PRECISIONS:
        raise AdvisorError(f"--precision: expected one of {', '.join(CLAIM_PRECISIONS)}, "
                           f"got {precision!r}")


# --------------------------------------------------------------------------- compute


def _compute(gpu, summary, ips, precision, mfu_ceiling, findings) -> dict:
    per_image = summary["tflops_per_image"]
    implied = per_image["total"] * ips
    peak_precision, peak, peak_note = _peak(gpu, precision)
    mfu = implied / peak
    ceiling, ceiling_source = mfu_ceiling or (
        ASSUMED_MFU_CEILING, f"assumed {ASSUMED_MFU_CEILING:.0%} (no measured MFU available): "
                             "about the best dense-GEMM efficiency on large matrices")
    work = (f"{per_image['total']:.1f} TFLOP per image x {ips:.3g} img/s = {implied:.0f} "
            f"TFLOP/s")
    if implied > peak:
        findings.append(("impossible", f"{work}, {mfu:.1f}x the {gpu.name}'s dense "
                                       f"{peak_precision} peak of {peak:g} TFLOP/s{peak_note}"))
    elif mfu > ceiling * (MEASURED_MFU_TOLERANCE if mfu_ceiling else 1.0):
        findings.append(("implausible", f"{work} is {mfu:.0%} MFU of the dense "
                                        f"{peak_precision} peak ({peak:g}); the ceiling is "
                                        f"{ceiling:.0%}: {ceiling_source}"))
    else:
        findings.append(("plausible", f"{work} is {mfu:.0%} MFU of the dense {peak_precision} "
                                      f"peak ({peak:g} TFLOP/s{peak_note})"))
    return {"tflops_per_image": per_image, "implied_tflops": implied,
            "peak_tflops": peak, "peak_precision": peak_precision, "mfu": mfu,
            "mfu_ceiling": ceiling, "mfu_ceiling_source": ceiling_source}


def _peak(gpu, precision) -> tuple[str, float, str]:
    """(precision, dense TFLOP/s, note) the claim is held to; the most lenient when unstated."""
    if precision is None:
        rates = {r: gpu.dense_tflops(r) for r in dict.fromkeys(map(_rate, CLAIM_PRECISIONS))
                 if gpu.dense_tflops(r)}
        best = max(rates, key=rates.get)
        return best, rates[best], (f"; precision not stated, so the card's fastest path "
                                   f"({best}) counts")
    key = _rate(precision)
    rate = gpu.dense_tflops(key)
    if rate:
        return key, rate, "" if key == precision else f"; {precision} runs its matmuls at {key}"
    return "fp32", gpu.dense_tflops("fp32"), (f"; the card has no {key} tensor path, so "
                                              "it runs at most at the fp32 rate")


# --------------------------------------------------------------------------- memory


def _memory(gpu, summary, batch_s, vram_gb, precision, steps, findings) -> dict:
    budget = min(vram_gb, gpu.capacity_gb) if vram_gb else gpu.capacity_gb
    if vram_gb and vram_gb > gpu.capacity_gb:
        findings.append(("impossible", f"claims {vram_gb:g} GB of GPU memory on a "
                                       f"{gpu.memory_gb:g} GB card ({gpu.capacity_gb:.2f} "
                                       "decimal GB)"))
    link_gbs = pcie_gbs(gpu.host_interface) / PCIE_EFFICIENCY  # the raw link: a lower bound
    options = []
    for p in ([_weights(precision)] if precision else WEIGHT_STORAGE):
        weights = {k: v / 1e9 for k, v in workload.weight_bytes(p).items()}
        for offload in OFFLOADS:
            resident, moved = _offload(weights, offload, steps)
            options.append({"precision": p, "offload": offload, "resident_gb": resident,
                            "transfer_s_per_batch": moved / link_gbs})
    fits = [o for o in options if o["resident_gb"] <= budget
            and o["transfer_s_per_batch"] <= batch_s]
    # a way no modelled setting runs (int4 weights, quantized weights with offload) may be
    # mentioned, but it never explains a claim, unless the claim names that precision itself
    counted = [o for o in fits if precision in UNMODELLED or _modelled(o)]
    plain = options[0]
    held = f"{budget:.4g} GB" + (" claimed" if vram_gb else f" on the {gpu.name}")
    if not fits:
        findings.append(("impossible", _no_fit(options, budget, held, batch_s, link_gbs)))
    elif not counted:
        findings.append(("implausible", f"the {plain['precision']} weights "
                                        f"({plain['resident_gb']:.1f} GB) exceed {held}; only "
                                        f"{_unmodelled_ways(fits)} would fit, which no modelled "
                                        "setting runs (not probed here), so they do not count"))
    elif not any(o["offload"] == "none" and o["precision"] == plain["precision"] for o in fits):
        first = min(counted, key=lambda o: (OFFLOADS.index(o["offload"]),
                                            o["transfer_s_per_batch"]))
        cost = "" if first["offload"] == "none" else (
            f", >= {first['transfer_s_per_batch']:.2f} s of transfers per {batch_s:.2f} s batch")
        smaller = [o["precision"] for o in fits if o["offload"] == "none"]
        which = "" if first["offload"] != "none" or precision else (
            "; without offload only quantized weights fit: " + ", ".join(
                f"{w} ({'/'.join(p for p in CLAIM_PRECISIONS if _weights(p) == w)})"
                for w in smaller))
        others = [o for o in fits if o not in counted]
        also = f"; {_unmodelled_ways(others)} would fit too, not modelled" if others else ""
        findings.append(("plausible", f"the {plain['precision']} weights "
                                      f"({plain['resident_gb']:.1f} GB) exceed {held}; it fits "
                                      f"only with {_name(first)} ({first['resident_gb']:.1f} GB "
                                      f"resident{cost}){which}{also}"))
    else:
        findings.append(("plausible", f"the {plain['precision']} weights "
                                      f"({plain['resident_gb']:.1f} GB) fit in {held}"))
    return {"memory_budget_gb": budget, "host_link_gbs": link_gbs,
            "min_resident_gb": plain["resident_gb"], "memory_options": options,
            "memory_explanations": [_name(o) for o in counted],
            "memory_settings": [(o["precision"], o["offload"]) for o in counted]}


def _modelled(option: dict) -> bool:
    """Whether a modelled precision stores its weights as `option` does and runs with its
    offload (quantized precisions run without offload only)."""
    return any(_weights(p) == option["precision"]
               and (option["offload"] == "none" or p not in QUANTIZATIONS) for p in PRECISIONS)


def _unmodelled_ways(options: list[dict]) -> str:
    """Ways of holding the weights as words: "int4 weights without offload or fp8 weights
    with sequential offload"."""
    return " or ".join(f"{o['precision']} weights " + (
        "without offload" if o["offload"] == "none" else f"with {o['offload']} offload")
        for o in options)


def _offload(weights: dict, offload: str, steps: int) -> tuple[float, float]:
    """(GB resident at least, GB moved over the host link per batch) for an offload mode."""
    if offload == "none":
        return weights["total"], 0.0
    if offload == "model":  # one component on the GPU at a time, each moved once per call
        return max(weights[k] for k in ("transformer", "text_encoder", "vae")), weights["total"]
    # sequential: layers stream in as they run; the transformer once per step
    return 0.0, steps * weights["transformer"] + weights["text_encoder"] + weights["vae"]


def _no_fit(options, budget, held, batch_s, link_gbs) -> str:
    plain = options[0]
    fastest = min((o for o in options if o["resident_gb"] <= budget),
                  key=lambda o: o["transfer_s_per_batch"], default=None)
    text = f"the {plain['precision']} weights need {plain['resident_gb']:.1f} GB, more than {held}"
    if fastest:
        text += (f"; the best offload ({_name(fastest)}) moves weights for >= "
                 f"{fastest['transfer_s_per_batch']:.2f} s per batch over a {link_gbs:.0f} GB/s "
                 f"host link, longer than the claimed {batch_s:.2f} s batch")
    return text


def _name(option: dict) -> str:
    off = "no offload" if option["offload"] == "none" else f"{option['offload']} offload"
    return f"{option['precision']} weights, {off}"


# --------------------------------------------------------------------------- prediction


def _modelled_speed(models, note, gpu, claim: dict, memory: dict, findings) -> dict | None:
    """The fitted models' time for the settings that explain the claim's memory (its precision
    and offload, every attention and compile setting; quantized precisions without offload, on
    cards that run them) and whose predicted torch peak can fit in the memory budget: memory and
    speed must be possible together, in one setting. Claimed faster than the fastest of them,
    or slower than the slowest of those with the least offload, by a wide margin: implausible.
    Where only quantized settings explain the memory or the speed, the reasons name them."""
    if models is None:
        findings.append(("plausible", f"no fitted prediction to compare with: "
                                      f"{note or 'no models given'}"))
        return None
    stated, explained = claim["precision"], memory["memory_settings"]
    settings = [(p, o) for w, o in explained for p in PRECISIONS
                if _weights(p) == w and stated in (None, p) and not not_offered(gpu, p)
                and (o == "none" or p not in QUANTIZATIONS)]
    unmodelled = [p for p in UNMODELLED if stated in (None, p) and gpu.dense_tflops(_rate(p))
                  and any(_weights(p) == w for w, _ in explained)]
    if not settings:
        why = (f"{stated} is not offered on the {gpu.name}: {not_offered(gpu, stated)}"
               if stated in PRECISIONS and not_offered(gpu, stated) else
               f"only {'/'.join(unmodelled)} explain the memory, and the models cover "
               f"{', '.join(PRECISIONS)}")
        findings.append(("plausible", f"no fitted prediction: {why}"))
        return None
    c, batch = claim, claim["batch"]
    queries = [(c["gpu"], Config(height=c["height"], width=c["width"], batch=batch,
                                 steps=c["steps"], caption_tokens=c["caption_tokens"],
                                 guidance_scale=CFG_GUIDANCE_SCALE if c["cfg"] else 0.0,
                                 precision=p, attention=a, compile=k, offload=o))
               for p, o in settings for a in ATTENTIONS for k in (False, True)
               if not not_offered(gpu, p, k, a)]
    preds, missing = [], []
    for precision in dict.fromkeys(p for p, _ in settings):  # one the models lack spares the rest
        try:
            preds += models.predict_many([q for q in queries if q[1].precision == precision])
        except AdvisorError as exc:
            missing.append(str(exc))
    if not preds:
        findings.append(("plausible", f"no fitted prediction for this config: "
                                      f"{'; '.join(missing)}"))
        return None
    findings += [("plausible", f"note: no prediction for one precision: {why}")
                 for why in missing]
    budget = memory["memory_budget_gb"]
    fitting = [x for x in preds if x.memory.allocated_interval_gb[0] <= budget]
    if not fitting:
        least_memory = min(preds, key=lambda x: x.memory.allocated_gb)
        findings.append(("implausible", f"no modelled setting runs in {budget:.4g} GB: the least "
                                        f"memory, {_setting(least_memory)}, needs a torch peak "
                                        f"of {least_memory.memory.allocated_gb:.1f} GB at this "
                                        "size and batch"))
        return None
    fastest = min(fitting, key=lambda x: x.latency.total_s)
    least = min(OFFLOADS.index(x.config.offload) for x in fitting)
    slowest = max((x for x in fitting if OFFLOADS.index(x.config.offload) == least),
                  key=lambda x: x.latency.total_s)
    low = fastest.latency.interval_s[0] / batch
    high = slowest.latency.interval_s[1] / batch
    claimed = c["seconds_per_image"]
    within = f"the settings that fit in {budget:.4g} GB" if least > 0 else ""
    where = (f"predicted {low:.2f}-{high:.2f} s per image ({_setting(fastest)} fastest"
             + (f", {_setting(slowest)} slowest" if slowest is not fastest else "")
             + f", batch {batch}; {fastest.source})")
    if claimed < low / FASTER_THAN_PREDICTED:
        findings.append(("implausible", f"claimed {claimed:.2f} s per image is "
                                        f"{low / claimed:.1f}x faster than the fastest "
                                        f"prediction{' of ' + within if within else ''}: {where}"
                                        + ("; memory and speed must hold in one setting"
                                           if within else "")
                                        + (f"; {'/'.join(unmodelled)}, which the models do not "
                                           "cover, might be faster: not counted"
                                           if unmodelled else "")))
    elif claimed > high * SLOWER_THAN_PREDICTED:
        findings.append(("implausible", f"claimed {claimed:.2f} s per image is "
                                        f"{claimed / high:.1f}x slower than the slowest "
                                        f"prediction {_offload_words(least)}: {where}"))
    else:
        findings.append(("plausible", f"claimed {claimed:.2f} s per image; {where}"))
    quantized = None if stated else _quantized_only(fitting, claimed, batch, budget)
    if quantized:
        findings.append(("plausible", quantized["reason"]))
    if not fastest.fits:
        findings.append(("plausible", f"note: the models say {_setting(fastest)} batch {batch} "
                                      f"does not fit: {fastest.fits_reason}"))
    findings += [("plausible", f"note on the prediction: {note}")
                 for note in caveats(fastest, gpu, Probed.of(models.records))
                 if not note.startswith("over capacity")]
    return {"precision": fastest.config.precision, "seconds_per_image": [low, high],
            "settings": [_name({"precision": p, "offload": o}) for p, o in settings],
            "fastest": _brief(fastest, batch), "slowest": _brief(slowest, batch),
            "quantized_only": quantized}


def _quantized_only(fitting, claimed: float, batch: int, budget: float) -> dict | None:
    """For a claim that does not name its precision: which quantized settings make it possible
    when no other setting does, because none other fits in the memory budget (by the weights'
    arithmetic or the predicted peak) or none other that fits is fast enough (the claimed time
    not FASTER_THAN_PREDICTED below its interval). None when another setting explains it."""
    def lossy(x) -> bool:
        return x.config.precision in QUANTIZATIONS

    explains = [x for x in fitting
                if claimed >= x.latency.interval_s[0] / batch / FASTER_THAN_PREDICTED]
    if not explains or not all(map(lossy, explains)):
        return None
    limit = "speed" if any(not lossy(x) for x in fitting) else "memory"
    best = min(explains, key=lambda x: x.latency.total_s)
    precisions = list(dict.fromkeys(x.config.precision for x in explains))
    lo, hi = (t / batch for t in best.latency.interval_s)
    what = f"fits in {budget:.4g} GB" if limit == "memory" else "that fits is fast enough"
    return {"limit": limit, "precisions": precisions, "fastest": _brief(best, batch),
            "reason": f"only a quantized setting makes the claimed {limit} possible: no other "
                      f"setting {what}; {'/'.join(precisions)} can ({_setting(best)} predicted "
                      f"{lo:.2f}-{hi:.2f} s per image, {best.source}). {QUALITY_CAVEAT}"}


def _setting(pred) -> str:
    return pred.config.setting.label


def _offload_words(level: int) -> str:
    return "without offload" if level == 0 else f"with {OFFLOADS[level]} offload"


def _brief(pred, batch: int) -> dict:
    return {"config": pred.config.record(), "seconds_per_image": pred.latency.total_s / batch,
            "interval_s_per_image": [x / batch for x in pred.latency.interval_s],
            "memory_needed_gb": pred.memory.needed_gb, "fits": pred.fits,
            "source": pred.source, "source_detail": pred.source_detail,
            "model_version": pred.model_version}


# --------------------------------------------------------------------------- measured MFU


def measured_mfu_ceiling(data_dir, precision: str | None = None) -> tuple[float, str] | None:
    """The best MFU any measured config reached, and where; None without measurements.

    With a `precision`, only configs run at it count (when there are any): MFU is relative to
    that precision's peak, and the fp32 path reaches a larger share of its much lower peak than
    the 16-bit tensor cores do of theirs."""
    from advisor.records import load_measurements

    try:
        records, _ = load_measurements(data_dir)
    except AdvisorError:
        return None
    measured = [(r["results"]["mfu"], r.get("_source", "?"), (r.get("config") or {}).get(
        "precision")) for r in records
        if r.get("status") == "ok" and (r.get("results") or {}).get("mfu") is not None]
    same = [m for m in measured if m[2] == precision]
    which = f"{precision} " if same else ""
    measured = same or measured
    if not measured:
        return None
    best, where, _ = max(measured)
    return best, (f"the best of {len(measured)} measured {which}configs ({where}; denoise-step "
                  "MFU, +10% tolerance)")
