"""Transfer to a GPU never probed, op class by op class.

A probe profile (`results.profile`) splits a stage's GPU time into op classes: GEMMs, attention,
convolutions and elementwise work (norms, RoPE, activations, copies). Each class runs at another
rate on another GPU, so each is scaled by its own ratio; the host issuing the kernels is
another pace, and a stage takes the larger of the two:

    t(target) = t(ref) + max(H, B(target)) - max(H, B(ref)),  H at most t(ref),
    B(g) = sum over classes k of c_k(config) x rho_k(P -> g)

`t(ref)` is the fitted time on a probed GPU (H is taken at most t(ref): a stage cannot take less
than its host time, and the latency fit weighs host-bound rows lightly, so at a host-paced shape
t(ref) can fall under the profiling host's H), `c_k` the class seconds on the profiled GPU P at
this config (fitted per setting from the profiles, proportional to each class's work), B(g) the
GPU-busy seconds on g, and H the host's time to issue the stage's kernels on the profiling
machine (kernels launched x seconds per launch, both from the profiles). The host issues ahead
of the GPU, so a stage takes about the larger of the two: on the H200 a 512x512 b1 step is
busy 37 of 72-76 ms with 2,709 launches, a 512x512 b4 step busy 137-138 of 145-158 ms with
2,930 (its idle gap fell from 35-39 to 8-20 ms as the GPU work grew). Without launch counts
in the profiles H is 0 and the change is the sum of the class differences. `rho_k(P -> g)` is
how much longer class k takes on g than on P:
- GEMM, attention, convolution: the ratio of achieved dense bf16 matmul rates (the catalog's
  cited `achieved_bf16_tflops`; for a GPU without one, its datasheet peak times the median
  achieved fraction of its architecture, else of every GPU that has one: stated);
- elementwise: beta x the memory-bandwidth ratio + (1 - beta) x the fp32 (CUDA-core) rate
  ratio. These kernels reach a fraction of peak bandwidth, so they are not bandwidth-bound
  alone; beta comes from the probed GPUs that differ in bandwidth and not in compute (H100
  and H200: 3.35 vs 4.8 TB/s, the same fp32 and tensor rates).

A quantized precision (contract.QUANTIZATIONS) has no profiles and no published points; where
its setting was not measured on a GPU, its stage times are the bf16 config's there (fitted, or
transferred as above) times the quantized / bf16 ratio of the fitted times on a GPU that
measured both (`quantized_ratios`), with fp8's matmul term rescaled by the target's fp8 / bf16
peak ratio against the reference's (advisor.models applies it).
numpy only (the model cache holds it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from advisor.contract import Config, cfg_passes
from advisor.features import (
    LATENCY_FEATURES, LATENCY_STAGES, group_of, make_row, shape_costs,
)

CLASSES = ("gemm", "attention", "convolution", "elementwise")
TRANSFER_STAGES = ("text_encode", "denoise_step", "vae_decode")
TRANSFER_PRECISIONS = ("bf16", "fp16")
BASE_GROUP = ("bf16", "native", False)  # the class split a setting without a profile borrows
# A profile whose classes cover less of its window than this is host-bound (the GPU waits on
# kernel launches): it cannot tell how bandwidth-bound the elementwise work is.
COVERED = 0.9
# A window busy less than this share of its wall time is paced by the host: the stage's timed
# seconds over its launches are the host's seconds per launch.
HOST_PACED = 0.6
TIMED = {"text_encode": "text_encode_s", "denoise_step": "denoise_step_s",
         "vae_decode": "vae_decode_s"}  # a record's timed seconds of each profiled stage
# The fitted latency terms that run at a quantized precision's compute rate (row "tflops"):
# the quantized Linear layers of the text encoder and the transformer; the VAE stays bf16.
COMPUTE_TERMS = {"text_encode": "compute", "denoise_step": "matmul"}


def class_work(row: dict, stage: str) -> dict[str, float]:
    """What sets each class's time in a stage, per batch (units differ by class; a fitted
    coefficient carries them)."""
    images = row["batch"] * cfg_passes(row["cfg"])
    if stage == "text_encode":
        return dict.fromkeys(("gemm", "attention", "elementwise"), float(images)) | {
            "convolution": 0.0}
    costs = shape_costs(row["height"], row["width"], row["caption_tokens"])
    if stage == "denoise_step":
        return {"gemm": images * (costs["forward_tflops"] - costs["attention_tflops"]),
                "attention": images * costs["attention_tflops"], "convolution": 0.0,
                "elementwise": images * costs["seq_tokens"]}
    pixels = row["batch"] * row["height"] * row["width"]
    return {"gemm": 0.0, "attention": row["batch"] * costs["latent_pixels"] ** 2,
            "convolution": row["batch"] * costs["vae_tflops"], "elementwise": float(pixels)}


@dataclass
class ClassTransfer:
    profiled_gpu: str
    coefs: dict  # (stage, group) -> {class: seconds per unit of work}
    beta: float  # bandwidth-bound share of the elementwise time
    beta_basis: str
    rates: dict  # GPU id -> (achieved matmul TFLOP/s, its source, bandwidth GB/s, fp32 TFLOP/s)
    n_profiles: int
    host: str = ""  # CPU of the profiling machine: host time is taken as on it
    launches: dict = field(default_factory=dict)  # (stage, group) -> kernels per window
    # (stage, group), and (stage, None) over every group -> the profiling host's seconds per
    # kernel launch: the median over host-paced windows
    launch_s: dict = field(default_factory=dict)
    n_paced: int = 0

    def applies(self, row: dict) -> bool:
        return (row["precision"] in TRANSFER_PRECISIONS and row["offload"] == "none"
                and row["gpu"] in self.rates)

    def rho(self, gpu: str) -> dict[str, float]:
        """How much longer each class takes on `gpu` than on the profiled GPU."""
        (pg, _, pb, pf), (gg, _, gb, gf) = self.rates[self.profiled_gpu], self.rates[gpu]
        tensor = pg / gg
        return {"gemm": tensor, "attention": tensor, "convolution": tensor,
                "elementwise": self.beta * pb / gb + (1 - self.beta) * pf / gf}

    def seconds(self, row: dict, stage: str) -> dict[str, float]:
        """Class seconds of a stage on the profiled GPU at this row's config."""
        coef = self.coefs.get((stage, group_of(row))) or self.coefs[(stage, BASE_GROUP)]
        work = class_work(row, stage)
        return {k: coef[k] * work[k] for k in CLASSES}

    def host_s(self, row: dict, stage: str) -> float:
        """The profiling host's seconds to issue a stage's kernels at this row's setting (its
        own profiles where they exist, else the plain setting's launches and every setting's
        cost per launch); 0 without launch counts."""
        group = group_of(row)
        launches = self.launches.get((stage, group)) or self.launches.get((stage, BASE_GROUP))
        cost = self.launch_s.get((stage, group)) or self.launch_s.get((stage, None))
        return launches * cost if launches and cost else 0.0

    def stage_s(self, row: dict, ref_gpu: str, stage: str, ref_s: float) -> float:
        """A stage's seconds on the row's GPU from its seconds `ref_s` on `ref_gpu`: plus the
        change of the larger of host issue and GPU busy time. The host's issue time is taken at
        most `ref_s` (a stage cannot take less than its host time; a fit that weighs host-bound
        rows lightly can put a host-paced stage under the profiling host's issue time)."""
        return self.stage_s_on(self.stage_parts(row, ref_gpu, stage, ref_s),
                               self.rho(row["gpu"]))

    def stage_parts(self, row: dict, ref_gpu: str, stage: str, ref_s: float) -> tuple:
        """What `stage_s` needs of a config, the same for every GPU it is carried to: (class
        seconds on the profiled GPU, the host's issue seconds, the larger of those and the GPU
        busy seconds on `ref_gpu`, `ref_s`)."""
        classes = self.seconds(row, stage)
        host = min(self.host_s(row, stage), ref_s)
        return classes, host, max(host, _busy(classes, self.rho(ref_gpu))), ref_s

    @staticmethod
    def stage_s_on(parts: tuple, rho: dict[str, float]) -> float:
        """`stage_s` from a config's `stage_parts` on a GPU whose `rho` is given."""
        classes, host, ref_paced, ref_s = parts
        return max(ref_s + max(host, _busy(classes, rho)) - ref_paced, 0.0)

    def basis(self, gpu: str) -> str:
        gemm, source, bandwidth, fp32 = self.rates[gpu]
        return (f"per-class transfer from {self.n_profiles} op-class profiles of "
                f"{self.profiled_gpu}: GEMM/attention/convolution at {gemm:.0f} TFLOP/s "
                f"({source}), elementwise {self.beta:.0%} by bandwidth ({bandwidth:g} GB/s) and "
                f"{1 - self.beta:.0%} by the fp32 rate ({fp32:g} TFLOP/s) ({self.beta_basis}); "
                f"the host as on the probing machine ({self.host}"
                + (f": kernel launches x the seconds per launch of {self.n_paced} host-paced "
                   "profile windows; a stage takes the larger of host issue and GPU time)"
                   if self.launch_s else ")"))


def carried_times(transfer: ClassTransfer, ref: str, ref_spec, latency, rows: list[dict],
                  configs: list, index: list[int]) -> np.ndarray:
    """(len(index), stages) seconds of the rows at `index` on their GPUs, carried from the
    reference GPU `ref` (its GpuSpec `ref_spec`, its fitted `latency`) by `transfer`, stage by
    stage. A config's times on the reference GPU, and what the transfer takes of them, are the
    same for every GPU it is carried to: computed once per distinct config."""
    columns = [LATENCY_STAGES.index(s) for s in TRANSFER_STAGES]
    first: dict = {}  # config -> its first row
    for i in index:
        first.setdefault(configs[i], i)
    position = {c: k for k, c in enumerate(first)}
    of = [position[configs[i]] for i in index]
    ref_times = latency.predict([make_row(ref_spec, c) for c in first])[0]
    parts = [[transfer.stage_parts(rows[i], ref, stage, ref_times[k, j])
              for stage, j in zip(TRANSFER_STAGES, columns)]
             for k, i in enumerate(first.values())]
    rho = {g: transfer.rho(g) for g in {rows[i]["gpu"] for i in index}}
    times = ref_times[of]
    for n, i in enumerate(index):
        for part, j in zip(parts[of[n]], columns):
            times[n, j] = transfer.stage_s_on(part, rho[rows[i]["gpu"]])
    return times


def _busy(classes: dict[str, float], rho: dict[str, float]) -> float:
    """GPU busy seconds of a stage's class seconds on a GPU `rho` times slower per class."""
    return sum(classes[k] * rate for k, rate in rho.items())


def fit_class_transfer(rows: list[dict], records: list[dict], latency,
                       specs: dict) -> dict[str, ClassTransfer]:
    """A ClassTransfer per profiled GPU, from its own profiles (class coefficients, launches
    and the seconds per launch of its host), with beta from the other probed GPUs' fitted
    times at its profiled configs; {} without profiles. A GPU never probed is predicted from
    each probed GPU through that GPU's own transfer (Models._by_class), so neither the
    elementwise share nor the launch costs rest on one reference alone."""
    rates = {g: (s.gemm_tflops, s.gemm_source, s.bandwidth_gbs, s.tflops.get("fp32"))
             for g, s in specs.items() if s.gemm_tflops and s.tflops.get("fp32")}
    profiled = [(row, r) for row, r in zip(rows, records)
                if _profile(r) and row["gpu"] in rates and row["offload"] == "none"]
    out = {}
    for gpu in sorted({row["gpu"] for row, _ in profiled}):
        mine = [(row, r) for row, r in profiled if row["gpu"] == gpu]
        transfer = _class_transfer(gpu, mine, rates)
        if transfer is not None:
            others = {row["gpu"] for row in rows} - {gpu}
            transfer.beta, transfer.beta_basis = _fit_beta(transfer, mine, latency, others,
                                                           specs)
            out[gpu] = transfer
    return out


def _class_transfer(gpu: str, profiled: list, rates: dict) -> ClassTransfer | None:
    """The class coefficients and launch costs of one GPU's profiles (beta still to fit);
    None without a profile of the plain setting."""
    coefs: dict = {}
    for stage in TRANSFER_STAGES:
        groups: dict[tuple, list] = {}
        for row, r in profiled:
            groups.setdefault(group_of(row), []).append((row, _profile(r)[stage]))
        for group, found in groups.items():
            coefs[(stage, group)] = {k: _median_ratio([p["class_s"][k] for _, p in found],
                                                      [class_work(row, stage)[k]
                                                       for row, _ in found]) for k in CLASSES}
    if not any(key[1] == BASE_GROUP for key in coefs):
        return None
    cpus = [(r.get("host") or {}).get("cpu") or "CPU not recorded" for _, r in profiled]
    launches, launch_s, n_paced = _launches(profiled)
    return ClassTransfer(gpu, coefs, 0.0, "", rates, len(profiled),
                         host=max(set(cpus), key=cpus.count), launches=launches,
                         launch_s=launch_s, n_paced=n_paced)


def _launches(profiled: list) -> tuple[dict, dict, int]:
    """(kernels per window by (stage, group); the host's seconds per launch by (stage, group)
    and by (stage, None) over every group; the windows those are medians over) from the
    profiles that counted launches. A launch's cost is a host-paced stage's timed seconds (the
    record's own, not the profiled window's: the profiler slows the host) over the window's
    launches; a window is host-paced when busy under HOST_PACED of its wall. ({}, {}, 0)
    without such windows."""
    counted: dict[tuple, list] = {}
    paced: dict[tuple, list] = {}
    for row, record in profiled:
        for stage in TRANSFER_STAGES:
            window = _profile(record)[stage]
            kernels, busy = window.get("kernels"), window.get("busy_s")
            if not isinstance(kernels, (int, float)) or kernels <= 0:
                continue
            counted.setdefault((stage, group_of(row)), []).append(kernels)
            timed = record["results"].get(TIMED[stage])
            if isinstance(busy, (int, float)) and busy < HOST_PACED * window["wall_s"] \
                    and isinstance(timed, (int, float)):
                for key in ((stage, group_of(row)), (stage, None)):
                    paced.setdefault(key, []).append(timed / kernels)
    median = lambda groups: {key: float(np.median(v)) for key, v in groups.items()}
    n_paced = sum(len(v) for key, v in paced.items() if key[1] is None)
    return (median(counted), median(paced), n_paced) if paced else ({}, {}, 0)


def _profile(record: dict) -> dict | None:
    profile = (record.get("results") or {}).get("profile")
    if not isinstance(profile, dict) or not all(
            isinstance(profile.get(s), dict) and isinstance(profile[s].get("class_s"), dict)
            for s in TRANSFER_STAGES):
        return None
    return profile


def _median_ratio(seconds: list, work: list) -> float:
    pairs = [(s, w) for s, w in zip(seconds, work) if isinstance(s, (int, float)) and w > 0]
    return float(np.median([s / w for s, w in pairs])) if pairs else 0.0


def _fit_beta(transfer: ClassTransfer, profiled: list, latency, others: set,
              specs: dict) -> tuple[float, str]:
    """The bandwidth-bound share of the elementwise time: solved per profiled config from the
    fitted denoise step of each other probed GPU (whose class ratios the rates give), median
    over the configs whose classes cover their window (not host-bound)."""
    estimates = []
    for gpu in sorted(others):
        if gpu not in transfer.rates:
            continue
        (pg, _, pb, pf), (og, _, ob, of) = transfer.rates[transfer.profiled_gpu], \
            transfer.rates[gpu]
        bw, fp = pb / ob, pf / of
        if abs(bw - fp) < 0.05:
            continue  # this GPU cannot tell bandwidth from compute
        seen, used = set(), []  # a config profiled on several machines is one estimate
        for row, record in profiled:
            step = _profile(record)["denoise_step"]
            config = Config.from_record(record["config"])
            if config in seen or \
                    sum(step["class_s"][k] or 0.0 for k in CLASSES) < COVERED * step["wall_s"]:
                continue
            seen.add(config)
            used.append((row, make_row(specs[gpu], config)))
        if not used:
            continue
        # each config's step on the profiled GPU, then on this one: one prediction for all
        steps = latency.predict([r for pair in used for r in pair])[0][
            :, LATENCY_STAGES.index("denoise_step")].reshape(-1, 2)
        tensor = pg / og
        for (row, _), (profiled_s, other_s) in zip(used, steps):
            classes = transfer.seconds(row, "denoise_step")
            delta = other_s - profiled_s - sum(classes[k] * (tensor - 1)
                                               for k in ("gemm", "attention", "convolution"))
            e = classes["elementwise"]
            estimates.append((delta - e * (fp - 1)) / (e * (bw - fp)))
    if not estimates:
        return 0.5, "assumed 50%: no probed GPU differs from the profiled one in bandwidth alone"
    beta = float(np.clip(np.median(estimates), 0.0, 1.0))
    return beta, (f"median of {len(estimates)} profiled configs, from the fitted step times of "
                  f"{', '.join(sorted(others))} against {transfer.profiled_gpu}")


def quantized_ratios(latency, quantized: list[dict], bf16: list[dict],
                     targets: list[dict]) -> np.ndarray:
    """(n, len(TRANSFER_STAGES)) factors from a bf16 config's stage times on a target row's GPU
    to its quantized config's: the fitted quantized / bf16 ratio on a reference GPU (row pairs
    `quantized`, `bf16` there), the share of the fitted compute term (COMPUTE_TERMS) in the
    quantized time rescaled by how much less the target's peak gains from it than the
    reference's (fp8 / bf16 peak ratios; 1 for weight-only, whose matmuls run at bf16)."""
    columns = [LATENCY_STAGES.index(s) for s in TRANSFER_STAGES]
    q = latency.predict(quantized)[0][:, columns]
    ratio = q / latency.predict(bf16)[0][:, columns]
    gain = lambda r: r["tflops"] / r["dtype_tflops"]
    slower = np.array([gain(r) / gain(t) for r, t in zip(quantized, targets)])
    for j, stage in enumerate(TRANSFER_STAGES):
        if stage in COMPUTE_TERMS:
            term = latency.terms(quantized, stage)[:, LATENCY_FEATURES[stage].index(
                COMPUTE_TERMS[stage])]
            ratio[:, j] *= 1 + term / q[:, j] * (slower - 1)
    return ratio
