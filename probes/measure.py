"""Measure one config on a loaded pipeline: instrumented calls of the real ZImagePipeline.

Each call is the pipeline's own `__call__`; hooks only mark time and memory:
- `encode_prompt` (wrapped): text encode, the prompt padded to max_sequence_length;
- a forward pre-hook on the transformer: the start of the first step, and a check that the caption
  length reaching the transformer is the one asked;
- `callback_on_step_end`: the end of each denoising step (transformer forward(s) + scheduler step);
- `vae.decode` (wrapped): VAE decode.
The rest of a call (latents, timesteps, image post-processing, offload hooks) is `other_s`.

Method: a warm-up call of one step (two for compiled configs: the first compiles), then up to
three calls of k steps (3, or 2 for slow configs), as many as fit the config's time budget. The
first step of a call is kept apart (it carries model-offload transfers); steps 2..k give the
steady step time. A full run of S steps is composed as
text_encode + first_step + (S-1) x step + vae_decode + other; configs marked `end_to_end` are also
run whole to check that composition.

Configs marked `check_equality` also run once, full length from a fixed seed, and again on the
same weights in their plain setting (`plain_setting`: torch.compile's stance forced to eager,
native attention, the VAE in the contiguous format); `results.equality` records the largest
absolute differences of the final latents and of the decoded images. The settings that should
not change the image (attention backend, compile and its mode, the VAE's compile and memory
format) are held to contract.EQUALITY_TOLERANCE there.

On several GPUs (probes.replicas) every process measures this way, and a `group` ties their
calls together: it starts the timed calls of all processes at once, and makes the processes
agree on each call's timings where they must make the same calls (one image split across them).
"""
from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field, replace

import torch

from advisor import workload
from advisor.contract import (
    CUDA_GRAPH_MODES,
    EQUALITY_TOLERANCE,
    STAGES,
    Config,
    Setting,
    same_image,
)
from probes.meters import Clock, Nvml, Sampler, peaks_mb, reset_peaks
from probes.pipeline import Loaded, free_memory, set_attention, set_tf32, set_vae
from probes.profile import profile_call
from probes.tokenizer import caption_prompt, negative_prompt

MAX_REPEATS = 3
# The first config after a pipeline load or an attention-backend switch (new kernels to load and
# tune) warms up with full-length calls until two in a row agree within SETTLE_TOLERANCE (at most
# SETTLE_CALLS): a single one-step warm-up left the first config of the shipped H100/H200 runs
# up to 60% slower than its own end-to-end check.
SETTLE_CALLS = 4
SETTLE_TOLERANCE = 0.05
PROFILE_STEPS = 3  # a profiled call: the first step apart, then two steady ones
EQUALITY_SEED = 0
PLAIN_SETTING = ("torch.compiler.set_stance('force_eager') on the same pipeline and weights, "
                 "native attention, VAE in contiguous memory format")


class CaptionMismatch(RuntimeError):
    """The caption length reaching the transformer is not the one the config asks for."""


@dataclass
class Call:
    """Timings of one pipeline call, seconds; windows are host-time spans for NVML samples."""
    text_encode_s: float
    first_step_s: float
    steady_steps_s: list[float]
    vae_decode_s: float
    call_s: float
    energy_j: float | None
    call_window: tuple[float, float]
    denoise_window: tuple[float, float] | None
    stage_memory: dict = field(default_factory=dict)

    @property
    def other_s(self) -> float:
        return self.call_s - self.text_encode_s - self.first_step_s - sum(self.steady_steps_s) \
            - self.vae_decode_s

    def peak_mb(self, key: str) -> float | None:
        """torch's peak over the stages: `peak_allocated_mb` or `peak_reserved_mb` (None on CPU)."""
        values = [m[key] for m in self.stage_memory.values()]
        return None if None in values else max(values)

    def composed_s(self, steps: int, step_s: float) -> float:
        """This call's stages extended to a run of `steps` steps at `step_s` a step."""
        return (self.text_encode_s + self.first_step_s + (steps - 1) * step_s
                + self.vae_decode_s + self.other_s)


def failed_stage(exc: BaseException) -> str | None:
    """The stage (STAGES) a failed `Runner.call` was in, None for a failure
    elsewhere."""
    return getattr(exc, "probe_stage", None)


def prepare(loaded: Loaded, config: Config) -> None:
    """Put the loaded pipeline in the config's attention backend, TF32 mode and VAE mode."""
    set_attention(loaded, config.attention)
    set_tf32(config.precision)
    set_vae(loaded, config.vae)


class Runner:
    """Instrumented calls of one loaded pipeline for one config. `stage` is the stage the last
    call reached; an exception out of `call` carries it (`failed_stage`)."""

    def __init__(self, loaded: Loaded, config: Config, device: torch.device, nvml: Nvml | None,
                 agree=None):
        self.pipe = loaded.pipe
        self.agree = agree  # Call -> Call: the timings every process of a group decides on
        self.config = config
        self.device = device
        self.nvml = nvml
        self.clock = Clock(device)
        tokenizer = self.pipe.tokenizer
        self.prompts = [caption_prompt(tokenizer, config.caption_tokens)] * config.batch
        self.negative = [negative_prompt(tokenizer)] * config.batch if config.cfg else None
        self.stage = STAGES[0]

    def invoke(self, steps: int, callback=None, **options):
        """One plain pipeline call of `steps` steps with this config's prompts and options."""
        c = self.config
        return self.pipe(prompt=self.prompts, negative_prompt=self.negative, height=c.height,
                         width=c.width, num_inference_steps=steps,
                         guidance_scale=c.guidance_scale,
                         max_sequence_length=c.max_sequence_length, callback_on_step_end=callback,
                         **options)

    def outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(final latents, decoded images) of one full call from EQUALITY_SEED, fp32 on the
        host."""
        kept = {}

        def keep(_pipe, index, _t, kwargs):
            if index == self.config.steps - 1:
                kept["latents"] = kwargs["latents"].float().cpu()
            return {}

        generator = torch.Generator(self.device).manual_seed(EQUALITY_SEED)
        images = self.invoke(self.config.steps, keep, generator=generator, output_type="pt").images
        return kept["latents"], images.float().cpu()

    def call(self, steps: int) -> Call:
        try:
            call = self._call(steps)
            return self.agree(call) if self.agree else call
        except Exception as exc:
            exc.probe_stage = self.stage
            raise

    def _call(self, steps: int) -> Call:
        pipe, clock, device, config = self.pipe, self.clock, self.device, self.config
        marks: dict = {"forwards": [], "steps": []}
        memory: dict = {}
        self.stage = STAGES[0]

        def stage(name, fn):
            def timed(*args, **kwargs):
                self.stage = name
                reset_peaks(device)
                marks[name] = [clock.mark()]
                out = fn(*args, **kwargs)
                marks[name].append(clock.mark())
                memory[name] = peaks_mb(device)
                return out
            return timed

        def before_forward(module, args):
            if not marks["forwards"]:
                self.stage = "denoise"
                reset_peaks(device)
                lengths = [len(c) for c in args[2][: config.batch]]
                if any(n != config.caption_tokens for n in lengths):
                    raise CaptionMismatch(f"caption tokens reaching the transformer: {lengths}, "
                                          f"asked {config.caption_tokens}")
            marks["forwards"].append(clock.mark())

        def step_end(_pipe, index, _t, _kwargs):
            marks["steps"].append(clock.mark())
            if index == steps - 1:
                memory["denoise"] = peaks_mb(device)
            return {}

        with _patched(pipe, "encode_prompt", stage("text_encode", pipe.encode_prompt)), \
                _patched(pipe.vae, "decode", stage("vae_decode", pipe.vae.decode)), \
                pipe.transformer.register_forward_pre_hook(before_forward):
            clock.start()
            energy0 = self.nvml.energy_j() if self.nvml else None
            start = clock.mark()
            self.invoke(steps, step_end)
            end = clock.mark()
            clock.sync()
            energy1 = self.nvml.energy_j() if self.nvml else None

        s = clock.seconds
        step_ends = [s(m) for m in marks["steps"]]

        def span(name: str) -> float:
            return s(marks[name][1]) - s(marks[name][0])

        return Call(
            text_encode_s=span("text_encode"),
            first_step_s=step_ends[0] - s(marks["forwards"][0]),
            steady_steps_s=[b - a for a, b in zip(step_ends, step_ends[1:])],
            vae_decode_s=span("vae_decode"),
            call_s=s(end) - s(start),
            energy_j=None if energy0 is None or energy1 is None else energy1 - energy0,
            call_window=(s(start), s(end)),
            denoise_window=(step_ends[0], step_ends[-1]) if len(step_ends) > 1 else None,
            stage_memory=memory,
        )


@contextlib.contextmanager
def plain_setting(loaded: Loaded):
    """The loaded pipeline run as its plain setting (PLAIN_SETTING) for the duration."""
    previous, vae = loaded.attention, loaded.pipe.vae
    set_attention(loaded, "native")
    if loaded.key.vae_channels_last:
        vae.to(memory_format=torch.contiguous_format)
    try:
        with torch.compiler.set_stance("force_eager"):
            yield
    finally:
        if loaded.key.vae_channels_last:
            vae.to(memory_format=torch.channels_last)
        set_attention(loaded, previous)


def plain_of(setting: Setting) -> Setting:
    """The setting `plain_setting` runs a pipeline of `setting` as."""
    return replace(setting, attention="native", compile=False, compile_mode="default",
                   vae_compile=False, vae_channels_last=False)


def equality(loaded: Loaded, runner: Runner) -> dict:
    """`results.equality`: the config's outputs against its plain setting's, same seed."""
    latents, images = runner.outputs()
    with plain_setting(loaded):
        plain_latents, plain_images = runner.outputs()
    out = {
        "reference": PLAIN_SETTING, "seed": EQUALITY_SEED, "steps": runner.config.steps,
        "latents_max_abs_diff": (latents - plain_latents).abs().max().item(),
        "latents_max_abs": plain_latents.abs().max().item(),
        "image_max_abs_diff": (images - plain_images).abs().max().item(),
        "tolerance": EQUALITY_TOLERANCE,
    }
    return {**out, "same_image": same_image(out)}


@contextlib.contextmanager
def _patched(obj, name: str, value):
    """Set an instance attribute for the duration (the pipeline looks methods up on the instance)."""
    setattr(obj, name, value)
    try:
        yield
    finally:
        delattr(obj, name)


def steps_per_call(warm: Call, steps: int, budget_s: float) -> int:
    """3 steps a call (two steady ones) when three such calls fit the budget, else 2."""
    k = 3 if MAX_REPEATS * (warm.call_s + 2 * warm.first_step_s) <= budget_s else 2
    return min(k, steps)


def timed_calls(runner: Runner, k: int, budget_s: float) -> list[Call]:
    """Calls of k steps: at least one, up to MAX_REPEATS while the next one fits the budget."""
    calls = [runner.call(k)]
    while len(calls) < MAX_REPEATS and sum(c.call_s for c in calls) + calls[-1].call_s <= budget_s:
        calls.append(runner.call(k))
    return calls


def whole_runs(runner: Runner, timed: list[Call], budget_s: float) -> list[Call]:
    """Full-length calls for the composition check: 1 to 3, in half the budget."""
    steps = runner.config.steps
    full_s = timed[0].composed_s(steps, _median([s for c in timed for s in c.steady_steps_s]
                                                 or [timed[0].first_step_s]))
    return [runner.call(steps) for _ in range(max(1, min(3, int(budget_s / 2 / full_s))))]


def settle(runner: Runner) -> None:
    """Full-length calls until two consecutive ones agree (clocks, allocator, autotuning)."""
    times = [runner.call(runner.config.steps).call_s]
    while len(times) < SETTLE_CALLS:
        times.append(runner.call(runner.config.steps).call_s)
        if abs(times[-1] - times[-2]) <= SETTLE_TOLERANCE * times[-2]:
            break


def measure(loaded: Loaded, config: Config, device: torch.device, nvml: Nvml | None,
            gpu_tflops: float | None, budget_s: float, settle_first: bool = False,
            profile: bool = False, group=None) -> dict:
    """The `results` block of an `ok` record. Exceptions (OOM included) propagate.
    `settle_first`: also settle the pipeline before timing (see SETTLE_CALLS). `profile`: add
    `results.profile` from one more call under torch.profiler (probes.profile), after the
    timed ones. `group` (several GPUs, probes.replicas): `agree` on each call, `start` before
    the timed calls and `finish(call)` after them."""
    prepare(loaded, config)
    runner = Runner(loaded, config, device, nvml, group.agree if group else None)
    free_memory()  # so that NVML sees this config's memory, not earlier configs' cached blocks
    baseline_mb = nvml.used_mb() if nvml else None
    sampler = Sampler(nvml.read) if nvml else contextlib.nullcontext()
    with sampler:
        warmups = [runner.call(1)]
        compiled = config.compile or config.vae_compile
        if compiled:  # the first call compiled; time a clean one to plan with
            warmups.append(runner.call(1))
        if settle_first or config.compile_mode in CUDA_GRAPH_MODES:  # graphs recorded anew
            settle(runner)
        k = steps_per_call(warmups[-1], config.steps, budget_s)
        if group:
            group.start()
        timed = timed_calls(runner, k, budget_s)
        if group:
            group.finish(lambda: runner.call(k))
        whole = whole_runs(runner, timed, budget_s) if config.end_to_end else []
    results = compose(config, timed, whole, k)
    results.update(_memory(timed[0]))
    results.update(_nvml(sampler if nvml else None, timed, config, results, baseline_mb))
    results.update(_throughput(config, results, gpu_tflops) if loaded.architecture == "z-image-turbo"
                   else {"achieved_tflops": None, "mfu": None})  # FLOPs are the real model's
    results.update(
        load_s=loaded.load_s, host_rss_peak_mb=loaded.host_rss_peak_mb,
        warmup_s=warmups[0].call_s,
        compile_s=warmups[0].call_s - warmups[1].call_s if compiled else None,
    )
    if config.check_equality and config.setting != plain_of(config.setting):
        results["equality"] = equality(loaded, runner)
    if profile and device.type == "cuda":
        steps = min(config.steps, PROFILE_STEPS)
        results["profile"] = profile_call(loaded.pipe, lambda: runner.invoke(steps), device)
    return results


def _median(values):
    return statistics.median(values)


def _spread(values):
    return [min(values), max(values)]


def compose(config: Config, timed: list[Call], whole: list[Call], k: int) -> dict:
    """Stage medians over the timed calls, and the full run composed from them."""
    steady = [s for c in timed for s in c.steady_steps_s] or [c.first_step_s for c in timed]
    step_s = _median(steady)
    per_call = {
        "text_encode_s": [c.text_encode_s for c in timed],
        "denoise_first_step_s": [c.first_step_s for c in timed],
        "denoise_step_s": steady,
        "denoise_s": [c.first_step_s + (config.steps - 1) * step_s for c in timed],
        "vae_decode_s": [c.vae_decode_s for c in timed],
        "other_s": [c.other_s for c in timed],
        "total_s": [c.composed_s(config.steps, step_s) for c in timed],
    }
    results = {key: _median(values) for key, values in per_call.items()}
    results["denoise_s"] = results["denoise_first_step_s"] + (config.steps - 1) * step_s
    results["total_s"] = (results["text_encode_s"] + results["denoise_s"]
                          + results["vae_decode_s"] + results["other_s"])
    results["img_per_s"] = config.batch / results["total_s"]
    results["spread"] = {key: _spread(values) for key, values in per_call.items()}
    results["repeats"] = len(timed)
    results["measured_steps"] = k
    end_to_end = _median([c.call_s for c in whole]) if whole else None
    results["end_to_end_s"] = end_to_end
    results["composition_error_pct"] = (
        None if end_to_end is None else 100.0 * (results["total_s"] - end_to_end) / end_to_end)
    return results


def _memory(call: Call) -> dict:
    return {"peak_allocated_mb": call.peak_mb("peak_allocated_mb"),
            "peak_reserved_mb": call.peak_mb("peak_reserved_mb"),
            "stage_memory": {name: call.stage_memory[name] for name in STAGES}}


def _nvml(sampler: Sampler | None, timed: list[Call], config: Config, results: dict,
          baseline_mb: float | None) -> dict:
    """NVML figures; null without NVML. Means over the steady denoise steps; energy per image of
    a full run: each timed call's energy (board counter, else integrated power samples), plus the
    extra steps of a full run at the denoise power."""
    keys = ("nvml_baseline_mb", "nvml_peak_used_mb", "gpu_util_pct", "power_w", "power_w_max",
            "sm_clock_mhz", "energy_j_per_image")
    if sampler is None:
        return dict.fromkeys(keys)
    windows = [c.denoise_window for c in timed if c.denoise_window] or \
              [c.call_window for c in timed]

    def mean(key: str) -> float | None:
        return _mean_or_none(sampler.values(key, windows))

    power = mean("power_w")
    energies = [c.energy_j if c.energy_j is not None else _integrate(sampler, c.call_window)
                for c in timed]
    energy = None
    if all(e is not None for e in energies):
        extra_steps = config.steps - results["measured_steps"]
        call_power = _median(energies) / _median([c.call_s for c in timed])
        energy = (_median(energies) + extra_steps * results["denoise_step_s"]
                  * (power if power is not None else call_power)) / config.batch
    used = sampler.values("used_mb")
    power_all = sampler.values("power_w")
    return {
        "nvml_baseline_mb": baseline_mb,
        "nvml_peak_used_mb": max(used) if used else None,
        "gpu_util_pct": mean("util_pct"),
        "power_w": power,
        "power_w_max": max(power_all) if power_all else None,
        "sm_clock_mhz": mean("sm_clock_mhz"),
        "energy_j_per_image": energy,
    }


def _mean_or_none(values):
    return statistics.fmean(values) if values else None


def _integrate(sampler: Sampler, window: tuple[float, float]) -> float | None:
    """Trapezoid integral of the power samples inside `window` (J), None with under two."""
    points = [(t, s["power_w"]) for t, s in sampler.samples
              if window[0] <= t <= window[1] and s.get("power_w") is not None]
    if len(points) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:]))


def _throughput(config: Config, results: dict, gpu_tflops: float | None) -> dict:
    """Achieved transformer TFLOP/s over the steady steps and MFU against the catalog peak."""
    per_step = (config.batch * workload.transformer_forwards(1, config.cfg)
                * workload.transformer_tflops_per_forward(config.height, config.width,
                                                          config.caption_tokens))
    achieved = per_step / results["denoise_step_s"]
    return {"achieved_tflops": achieved, "mfu": achieved / gpu_tflops if gpu_tflops else None}
