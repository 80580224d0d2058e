"""The probe on the tiny architecture on CPU: the real ZImagePipeline code path, records valid
against the schema, faults (injected OOM, errors, Ctrl-C), resume and corrupt lines, VAE modes,
and the minimum-cap search (its bisection with a fake trial; the sweep around it with a fake
search, since a cap needs CUDA)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import ZImageTransformer2DModel  # noqa: E402

from advisor import REPO_ROOT, records, workload  # noqa: E402
from advisor.cli import main  # noqa: E402
from advisor.errors import AdvisorError  # noqa: E402
from advisor.commands.probe import CUDA_CONTEXT_MIB, emulated_cap_gib  # noqa: E402
from advisor.contract import PROBED_OFFLOADS, VAE_MODES  # noqa: E402
from probes import caps, grids, measure, pipeline, runs, sweep  # noqa: E402
from probes.tokenizer import caption_length, caption_prompt, negative_prompt, word_tokenizer  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny models gain nothing from intra-op threads, and on a busy two-core machine two
    threads wait on each other (the same tests took 10 s or 100 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def configs(*groups, steps=2):
    return sweep.order(grids.expand({"defaults": {"steps": steps}, "groups": list(groups)}, "test"))


def run(out, cfgs, weights="synthetic", tiny=True, **options):
    return sweep.run(runs.Options(configs=cfgs, out=out, device=CPU, grid="test",
                                   weights=weights, tiny=tiny, budget_s=0.3, **options))


def read(out):
    found, problems = records.read_records(out)
    return found, problems


def labels(found):
    return [grids.Config.from_record(r["config"]).label() for r in found]


def inject(monkeypatch, when, make_exception):
    """Make the transformer raise `make_exception()` on calls where when(pixels, batch)."""
    real = ZImageTransformer2DModel.forward

    def forward(self, x, *args, **kwargs):
        pixels = x[0].shape[-2] * x[0].shape[-1] * 64  # latents are 1/8 of the image a side
        if when(pixels, len(x)):
            raise make_exception()
        return real(self, x, *args, **kwargs)

    monkeypatch.setattr(ZImageTransformer2DModel, "forward", forward)


SMALL = {"shapes": [[128, 128]], "batch": [1, 2]}


def test_synthetic_build_is_the_exact_architecture():
    pipe = pipeline.build_synthetic(torch.device("meta"), torch.bfloat16)
    counts = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
              for name in ("transformer", "text_encoder", "vae")}
    assert counts == workload.param_counts()
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.bfloat16}
    assert pipeline.architecture_of(pipe) == "z-image-turbo"
    tiny = pipeline.build_synthetic(CPU, torch.float32, tiny=True)
    assert pipeline.architecture_of(tiny) == "tiny"
    tiny.transformer.register_to_config(n_layers=3)
    with pytest.raises(AdvisorError, match="neither Z-Image-Turbo"):
        pipeline.architecture_of(tiny)


def test_word_tokenizer_gives_the_caption_length_asked():
    tokenizer = word_tokenizer()
    for tokens in (1, 7, 64, 512):
        assert caption_length(tokenizer, caption_prompt(tokenizer, tokens)) == tokens
    assert caption_length(tokenizer, negative_prompt(tokenizer)) == 1


class _TimedRunner:
    """Stands in for measure.Runner: each full-length call takes the next of `times` seconds."""

    def __init__(self, times):
        self.times, self.calls = list(times), 0
        self.config = type("Config", (), {"steps": 9})()

    def call(self, steps):
        assert steps == 9
        self.calls += 1
        return type("Call", (), {"call_s": self.times.pop(0)})()


@pytest.mark.parametrize("times,calls", [
    ([2.0, 1.2, 1.0, 1.0], 4),   # settles on the 3rd and 4th calls
    ([1.0, 1.04, 5.0, 5.0], 2),  # the first two agree within 5%
    ([3.0, 2.0, 1.5, 1.0], 4),   # never settles: stops at SETTLE_CALLS
])
def test_settle_runs_full_calls_until_two_agree(times, calls):
    runner = _TimedRunner(times)
    measure.settle(runner)
    assert runner.calls == calls


def test_sweep_settles_after_a_load_and_after_an_attention_switch(tmp_path, monkeypatch):
    settled = []

    def fake_measure(loaded, config, device, nvml, peak, budget_s, settle_first, profile,
                     group):
        settled.append((config.label(), settle_first))
        raise ValueError("not measured")  # recorded as an error; the sweep goes on

    monkeypatch.setattr(runs, "measure", fake_measure)
    run(tmp_path / "r.jsonl", configs({"shapes": [[128, 128]], "batch": [1, 2]},
                                      {"shapes": [[128, 128]], "attention": "flash"},
                                      {"shapes": [[128, 128]], "precision": "fp32"}))
    assert [flag for _, flag in settled] == [True, False, True, True], settled


def test_save_load_and_sweep_records_are_valid(tmp_path):
    saved = tmp_path / "pipe"
    pipeline.build_synthetic(CPU, torch.float32, tiny=True).save_pretrained(saved)
    out = tmp_path / "r.jsonl"
    summary = run(out, configs(SMALL, {"shapes": [[128, 192]], "guidance_scale": 4.0,
                                       "end_to_end": True}),
                  weights=str(saved), tiny=False)
    found, problems = read(out)
    assert problems == [] and len(found) == 3 and len(summary.rows) == 3
    for record in found:
        assert records.validate_record(record) == []
        assert record["status"] == "ok" and record["weights"] == "pretrained"
        assert record["weights_source"] == str(saved) and record["architecture"] == "tiny"
        r = record["results"]
        assert r["total_s"] == pytest.approx(r["text_encode_s"] + r["denoise_s"]
                                             + r["vae_decode_s"] + r["other_s"])
        assert r["denoise_s"] == pytest.approx(r["denoise_first_step_s"]
                                               + (record["config"]["steps"] - 1)
                                               * r["denoise_step_s"])
        assert 1 <= r["repeats"] <= 3 and r["measured_steps"] == 2
        assert r["nvml_peak_used_mb"] is None and r["achieved_tflops"] is None
        assert r["host_rss_peak_mb"] > 0 and r["load_s"] > 0
    e2e = [r["results"] for r in found if r["config"]["guidance_scale"] > 0][0]
    assert e2e["end_to_end_s"] > 0 and e2e["composition_error_pct"] is not None


def test_caption_mismatch_is_an_error_record(tmp_path, monkeypatch):
    monkeypatch.setattr("probes.measure.caption_prompt", lambda tok, n: "photo " * (n - 1))
    out = tmp_path / "r.jsonl"
    run(out, configs({"shapes": [[128, 128]]}))
    (record,), _ = read(out)
    assert record["status"] == "error" and "caption tokens reaching the transformer" in record["error"]


def test_oom_is_recorded_and_larger_shapes_of_the_family_are_skipped(tmp_path, monkeypatch):
    inject(monkeypatch, lambda pixels, batch: pixels * batch > 1.5 * 128 * 128,
           lambda: torch.OutOfMemoryError("CUDA out of memory (injected)"))
    cfgs = configs({"shapes": [[128, 128], [192, 192], [256, 256]], "batch": [1, 2]},
                   {"shapes": [[128, 128]], "batch": 2, "caption_tokens": 16})
    out = tmp_path / "r.jsonl"
    summary = run(out, cfgs)
    found, problems = read(out)
    assert problems == []
    status = {label: r["status"] for label, r in zip(labels(found), found)}
    assert status == {"128x128 b1 bf16 native steps=2": "ok",
                      "128x128 b2 bf16 native steps=2": "oom",
                      "192x192 b1 bf16 native steps=2": "oom",
                      "128x128 b2 bf16 native cap=16 steps=2": "oom"}  # another family: tried
    assert all(r["results"] is None and "injected" in r["error"] and r["failed_stage"] == "denoise"
               for r in found if r["status"] == "oom")
    assert {c.label() for c in summary.skipped_oom} == {"256x256 b1 bf16 native steps=2",
                                                        "192x192 b2 bf16 native steps=2",
                                                        "256x256 b2 bf16 native steps=2"}
    again = run(out, cfgs)  # resume: nothing left to do; the file's OOMs still skip
    assert again.rows == [] and again.resumed == 4 and len(again.skipped_oom) == 3


def test_other_exceptions_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    inject(monkeypatch, lambda pixels, batch: batch == 2, lambda: ValueError("boom"))
    out = tmp_path / "r.jsonl"
    run(out, configs({"shapes": [[128, 128], [192, 192]], "batch": [1, 2]}))
    found, _ = read(out)
    assert [r["status"] for r in found] == ["ok", "error", "ok", "error"]
    assert found[1]["error"] == "ValueError: boom" and found[1]["failed_stage"] == "denoise"
    assert "failed_stage" not in found[0]


def test_resume_skips_done_configs_and_reports_a_corrupt_line(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    run(out, configs({"shapes": [[128, 128]]}))
    with open(out, "a") as f:
        f.write('{"schema_version": 1, "status": "ok", truncated\n')
    summary = run(out, configs(SMALL))
    assert summary.resumed == 1 and len(summary.rows) == 1
    assert len(summary.problems) == 1 and f"{out}:2: corrupt JSON" in summary.problems[0]
    assert f"{out}:2" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["config"]["batch"] == 2


def test_ctrl_c_finishes_the_current_config_then_stops(tmp_path, monkeypatch):
    sent = []

    def interrupt_once(pixels, batch):
        if batch == 2 and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return False

    inject(monkeypatch, interrupt_once, RuntimeError)
    out = tmp_path / "r.jsonl"
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        summary = run(out, configs({"shapes": [[128, 128], [192, 192]], "batch": [1, 2]}))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    found, problems = read(out)
    assert problems == [] and [r["status"] for r in found] == ["ok", "ok"]
    assert found[1]["config"]["batch"] == 2  # the config in progress was finished and written
    assert "Ctrl-C" in summary.stopped and len(summary.not_run) == 2


def test_a_hard_interrupt_leaves_a_valid_file(tmp_path, monkeypatch):
    inject(monkeypatch, lambda pixels, batch: batch == 2, KeyboardInterrupt)
    out = tmp_path / "r.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(out, configs(SMALL))
    found, problems = read(out)
    assert problems == [] and len(found) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # no temp file left


def test_time_limit_stops_before_a_config_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "r.jsonl"
    summary = run(out, configs(SMALL), limit_s=1e-3)
    assert summary.rows == [] and "time limit" in summary.stopped and len(summary.not_run) == 2
    assert run(out, configs(SMALL)).rows and len(read(out)[0]) == 2


def test_failed_stage_names_the_vae_decode_and_the_load(tmp_path, monkeypatch):
    def decode(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (injected in the VAE)")

    monkeypatch.setattr("diffusers.AutoencoderKL.decode", decode)
    out = tmp_path / "r.jsonl"
    run(out, configs({"shapes": [[128, 128]]}))

    def load(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (injected at load)")

    monkeypatch.setattr(pipeline, "load", load)
    run(out, configs({"shapes": [[128, 128]], "precision": "fp32"}))
    found, problems = read(out)
    assert problems == [] and [r["status"] for r in found] == ["oom", "oom"]
    assert [r["failed_stage"] for r in found] == ["vae_decode", "load"]


def test_vae_modes_run_and_set_the_vae(tmp_path):
    out = tmp_path / "r.jsonl"
    run(out, configs({"shapes": [[128, 128]], "batch": 2, "vae": list(VAE_MODES)}))
    found, problems = read(out)
    assert problems == [] and all(r["status"] == "ok" for r in found)
    assert sorted(r["config"]["vae"] for r in found) == sorted(VAE_MODES)
    loaded = pipeline.load(pipeline.LoadKey("bf16", False, "none"), CPU, None, tiny=True)
    for mode, tiling, slicing in [("tiling+slicing", True, True), ("slicing", False, True),
                                  ("full", False, False), ("tiling", True, False)]:
        pipeline.set_vae(loaded, mode)
        assert (loaded.pipe.vae.use_tiling, loaded.pipe.vae.use_slicing) == (tiling, slicing)


def test_offload_pipelines_live_on_the_host_built_there_under_a_cap(monkeypatch):
    real_build, built, placed = pipeline.build_synthetic, [], []
    monkeypatch.setattr(pipeline, "build_synthetic", lambda device, dtype, tiny:
                        built.append(device) or real_build(CPU, dtype, tiny))
    monkeypatch.setattr(pipeline, "place", lambda pipe, device, key: placed.append(
        (key.offload, pipe.transformer.device.type)))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    gpu = torch.device("cuda", 0)
    for capped in (False, True):
        for offload in PROBED_OFFLOADS:
            pipeline.load(pipeline.LoadKey("bf16", False, offload), gpu, None, tiny=True,
                          capped=capped)
    # Uncapped, everything is built on the GPU (seconds, not minutes); under a cap an offloaded
    # pipeline is built on the host, so that its load never holds the whole model on the GPU.
    assert built == [gpu] * 4 + [gpu, CPU, CPU, CPU]
    assert all(where == "cpu" for offload, where in placed if offload != "none")
    assert [offload for offload, _ in placed] == list(PROBED_OFFLOADS) * 2
    monkeypatch.undo()

    class Pipe:
        def enable_group_offload(self, **kwargs):
            self.kwargs = kwargs

    pipe = Pipe()
    pipeline.place(pipe, gpu, pipeline.LoadKey("bf16", False, "group"))
    assert pipe.kwargs == {"onload_device": gpu, "offload_type": "block_level",
                           "num_blocks_per_group": 1, "use_stream": True}


@pytest.mark.parametrize("threshold", [19.3, 21.6, 23.49, 41.9])
def test_bisect_finds_the_smallest_cap_within_a_quarter_gib(threshold):
    def trial(cap):  # a config that runs from `threshold` GiB up
        return caps.Trial(cap, "ok") if cap >= threshold else caps.Trial(cap, "oom", "vae_decode")

    found, trials = caps.bisect(trial, 19.27, 42.0)
    assert threshold <= found <= threshold + caps.RESOLUTION_GIB
    assert len(trials) <= 7 and len({t.cap_gib for t in trials}) == len(trials)
    assert all(t.cap_gib % caps.STEP_GIB == 0 for t in trials)
    assert all((t.status == "ok") == (t.cap_gib >= threshold) for t in trials)


def test_bisect_stops_when_told():
    def before(cap):
        raise caps.Abandoned("time limit")

    with pytest.raises(caps.Abandoned, match="time limit"):
        caps.bisect(lambda cap: caps.Trial(cap, "ok"), 0.0, 10.0, before)
    assert caps.bisect(lambda cap: pytest.fail("no trial needed"), 20.0, 20.25) == (20.25, [])


class FakeCaps:
    """Stands in for the CUDA side of a minimum-cap search: `search` answers `found` GiB after
    two trials (or raises `fail`), and the cap set last is remembered for injected faults."""

    def __init__(self, monkeypatch, found=21.5, high=23.0, fail=None):
        self.cap, self.searched = None, []
        monkeypatch.setattr(caps, "set_memory_cap", self.set_memory_cap)
        monkeypatch.setattr(caps, "search", self.search)
        self.found, self.high, self.fail = found, high, fail

    def set_memory_cap(self, device, cap_gib):
        self.cap = cap_gib

    def search(self, loaded, config, device, before):
        self.searched.append(config.label())
        before(139.8)
        if self.fail:
            raise self.fail(config)
        self.cap = self.found
        return caps.Search(self.found, self.high, [
            caps.Trial(139.8, "ok"), caps.Trial(self.found - 0.25, "oom", "vae_decode"),
            caps.Trial(self.found, "ok")])


def test_min_cap_records_the_cap_found_and_the_trials_and_resume(tmp_path, monkeypatch):
    fake = FakeCaps(monkeypatch)
    out = tmp_path / "r.jsonl"
    cfgs = configs(SMALL)
    run(out, cfgs, min_cap=True)
    found, problems = read(out)
    assert problems == [] and len(found) == 2
    for record in found:
        assert record["status"] == "ok" and record["config"]["memory_cap_gib"] == 21.5
        assert record["results"]["min_cap_gib"] == 21.5
        assert record["results"]["cap_trials"] == [
            {"cap_gib": 139.8, "status": "ok", "failed_stage": None},
            {"cap_gib": 21.25, "status": "oom", "failed_stage": "vae_decode"},
            {"cap_gib": 21.5, "status": "ok", "failed_stage": None},
            {"cap_gib": 21.5, "status": "ok", "failed_stage": None}]  # the measurement
    assert run(out, cfgs, min_cap=True).resumed == 2 and len(fake.searched) == 2
    # explicit caps are other configs: not done by the search's records, and the reverse
    assert run(out, [replace(c, memory_cap_gib=23.5) for c in cfgs]).resumed == 0


def test_min_cap_measurement_out_of_memory_steps_the_cap_up(tmp_path, monkeypatch):
    fake = FakeCaps(monkeypatch, found=21.5, high=22.0)
    inject(monkeypatch, lambda pixels, batch: fake.cap < 21.75 or batch == 2,
           lambda: torch.OutOfMemoryError("CUDA out of memory (injected)"))
    out = tmp_path / "r.jsonl"
    run(out, configs(SMALL), min_cap=True)
    (b1, b2), problems = read(out)
    assert problems == [] and b1["config"]["memory_cap_gib"] == 21.75
    assert [(t["cap_gib"], t["status"]) for t in b1["results"]["cap_trials"][-2:]] == \
        [(21.5, "oom"), (21.75, "ok")]
    assert b2["status"] == "oom" and b2["failed_stage"] == "denoise"
    assert b2["config"]["memory_cap_gib"] is None and "under a 22 GiB cap" in b2["error"]
    assert run(out, configs(SMALL), min_cap=True).resumed == 2  # a failed search is done too


def test_min_cap_of_a_config_that_does_not_fit_uncapped(tmp_path, monkeypatch):
    def oom(config):
        exc = torch.OutOfMemoryError("CUDA out of memory (uncapped, injected)")
        exc.probe_stage = "denoise"
        return exc

    FakeCaps(monkeypatch, fail=oom)
    out = tmp_path / "r.jsonl"
    summary = run(out, configs(SMALL), min_cap=True)
    (record,), _ = read(out)  # batch 2 is skipped: batch 1 did not fit the device
    assert record["status"] == "oom" and record["config"]["memory_cap_gib"] is None
    assert record["failed_stage"] == "denoise" and len(summary.skipped_oom) == 1


def test_min_cap_search_stopped_by_the_time_limit_writes_nothing_for_it(tmp_path, monkeypatch):
    fake = FakeCaps(monkeypatch)
    out = tmp_path / "r.jsonl"
    real = fake.search

    def slow_second(loaded, config, device, before):
        if fake.searched:  # the second search finds the time limit passed
            monkeypatch.setattr(sweep, "time", SimpleNamespace(
                time=lambda: 1e12, perf_counter=time.perf_counter))
        return real(loaded, config, device, before)

    monkeypatch.setattr(caps, "search", slow_second)
    summary = run(out, configs(SMALL), min_cap=True, limit_s=1e6)
    assert "time limit" in summary.stopped and "during the search" in summary.stopped
    assert len(read(out)[0]) == 1 and len(summary.not_run) == 1
    monkeypatch.undo()
    FakeCaps(monkeypatch)
    assert len(run(out, configs(SMALL), min_cap=True).rows) == 1  # the rerun resumes


def test_emulated_cap_is_the_card_less_the_cuda_context():
    assert emulated_cap_gib(24) == round(24 - CUDA_CONTEXT_MIB / 1024, 2)
    assert emulated_cap_gib(24) == 23.32  # an RTX 4090


def test_cli_tiny_cpu_writes_valid_records(tmp_path, capsys):
    grid = tmp_path / "two.yaml"
    grid.write_text("groups:\n  - shapes: [[128, 128]]\n    batch: [1, 2]\n    steps: 2\n"
                    "  - shapes: [[128, 128]]\n    offload: model\n")
    out = tmp_path / "two.jsonl"
    assert main(["probe", "--grid", str(grid), "--tiny", "--device", "cpu", "--out", str(out)]) == 0
    found, problems = read(out)
    assert problems == [] and len(found) == 2
    assert all(r["status"] == "ok" and r["weights"] == "synthetic" for r in found)
    text = capsys.readouterr().out
    assert "leaving out 1 configs that need CUDA" in text
    assert "SYNTHETIC" in text and "2 records written" in text


@pytest.mark.parametrize("argv, message", [
    (["--tiny", "--weights", "/nowhere", "--device", "cpu"], "--tiny builds synthetic weights"),
    (["--tiny", "--device", "cpu"], "--out is required"),
    (["--weights", "/nowhere", "--device", "cpu", "--out", "x.jsonl"], "model_index.json"),
    (["--grid", "nope.yaml", "--tiny", "--device", "cpu", "--out", "x.jsonl"], "--grid nope.yaml"),
    (["--limit-s", "0", "--tiny", "--device", "cpu", "--out", "x.jsonl"], "--limit-s"),
    (["--memory-cap-gib", "0"], "--memory-cap-gib: expected a positive number of GiB, got 0"),
    (["--memory-cap-gib", "-3"], "got -3"),
    (["--emulate", "rtx-9090"], "--emulate: unknown GPU id 'rtx-9090'"),
    (["--min-cap", "--tiny", "--device", "cpu", "--out", "x.jsonl"],
     "--min-cap needs --device cuda"),
    (["--emulate", "rtx-4090", "--device", "cpu"], "a memory cap needs --device cuda"),
])
def test_cli_bad_input_is_a_message(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["probe", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_cap_flags_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["probe", "--emulate", "rtx-4090", "--memory-cap-gib", "20"])
    assert exit_.value.code == 2 and "not allowed with" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_cli_cuda_without_a_gpu(capsys):
    assert main(["probe", "--grid", "quick"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_help_imports_no_torch():
    code = ("import sys; from advisor.cli import build_parser; build_parser().format_help(); "
            "heavy = {'torch', 'diffusers', 'transformers'} & {m.split('.')[0] for m in sys.modules}; "
            "sys.exit(sorted(heavy) or 0)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_tiny_sweep_has_memory_and_nvml_figures(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep.run(runs.Options(configs=configs(SMALL, {"shapes": [[128, 128]],
                                                    "offload": ["model", "group"]}),
                            out=out, device=torch.device("cuda", 0), grid="test",
                            weights="synthetic", tiny=True, budget_s=0.5, profile=True))
    found, problems = read(out)
    assert problems == [] and all(r["status"] == "ok" for r in found)
    for r in found:
        assert r["results"]["peak_allocated_mb"] > 0
        assert r["gpu"]["compute_capability"] and r["gpu"]["uuid"].startswith("GPU-")
        assert len(r["host"]["fingerprint"]) == 12
        step = r["results"]["profile"]["denoise_step"]
        assert 0 < step["busy_s"] <= step["wall_s"] and step["kernels"] > 0
        assert sum(step["class_s"].values()) >= step["busy_s"] * 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_tiny_min_cap_search_and_an_explicit_cap(tmp_path):
    out, cuda = tmp_path / "r.jsonl", torch.device("cuda", 0)
    options = dict(out=out, device=cuda, grid="test", weights="synthetic", tiny=True, budget_s=0.5)
    sweep.run(runs.Options(configs=configs({"shapes": [[1024, 1024]], "batch": 4}),
                            min_cap=True, **options))
    sweep.run(runs.Options(configs=[replace(c, memory_cap_gib=1.0) for c in configs(SMALL)],
                            **options))
    (searched, *capped), problems = read(out)
    assert problems == [] and searched["status"] == "ok"
    r = searched["results"]
    assert r["min_cap_gib"] == searched["config"]["memory_cap_gib"]
    assert r["cap_trials"][0]["cap_gib"] > 20 and r["cap_trials"][-1]["cap_gib"] == r["min_cap_gib"]
    assert r["peak_reserved_mb"] <= r["min_cap_gib"] * 1024
    assert [c["config"]["memory_cap_gib"] for c in capped] == [1.0, 1.0]
    assert all(c["results"]["peak_reserved_mb"] <= 1024 for c in capped)
    assert torch.cuda.get_per_process_memory_fraction(cuda) == 1.0  # the sweep lifts its cap


def test_int8_weight_only_quantizes_the_block_linears_and_records_it(tmp_path):
    from probes import quantize
    out = tmp_path / "q.jsonl"
    run(out, configs({"shapes": [[64, 64]], "precision": ["bf16", "int8-wo"]}))
    found, problems = read(out)
    assert problems == [] and [r["status"] for r in found] == ["ok", "ok"]
    plain, quantized = found  # sweep.order: the quantized pipeline after the bf16 one
    assert "quantization" not in plain and quantized["config"]["precision"] == "int8-wo"
    q = quantized["quantization"]
    assert q["precision"] == "int8-wo" and q["torchao"] and q["quantize_s"] >= 0
    # tiny: every attention projection and adaLN of the blocks (widths multiple of 16); the
    # feed-forwards' 170-wide hidden layer is not, and is listed as skipped
    assert q["layers_quantized"]["text_encoder"] == 7 * 2
    assert all(".feed_forward." in name for name in q["layers_skipped"]["transformer"])
    loaded = pipeline.load(pipeline.LoadKey.of(grids.Config(64, 64, precision="int8-wo")), CPU,
                           None, tiny=True)
    weights = {type(m.weight).__name__ for name, m in loaded.pipe.transformer.named_modules()
               if isinstance(m, torch.nn.Linear) and quantize.aligned(m)
               and name.startswith(quantize.BLOCKS["transformer"])}
    embedders = {type(m.weight).__name__ for name, m in loaded.pipe.transformer.named_modules()
                 if isinstance(m, torch.nn.Linear) and name.startswith("all_x_embedder")}
    assert weights == {"Int8Tensor"} and embedders == {"Parameter"}


@pytest.mark.parametrize("group, message", [
    ({"precision": "fp8"}, "fp8 needs a CUDA GPU of compute capability 8.9"),
    ({"precision": "int8-wo", "offload": "model"}, "without offload only"),
])
def test_quantized_configs_this_machine_cannot_run_are_refused_before_any_work(group, message):
    from probes import quantize
    with pytest.raises(AdvisorError, match=message):
        quantize.check_configs(configs({"shapes": [[64, 64]], **group}), CPU)



def test_fp8_is_offered_from_compute_capability_8_9_and_int8_everywhere():
    from advisor.contract import unsupported_reason
    assert "8.9" in unsupported_reason("fp8", (8, 0))  # an A100
    assert "8.9" in unsupported_reason("fp8-wo", (8, 6))  # an RTX 3090
    assert unsupported_reason("fp8", (9, 0)) is None and unsupported_reason("fp8", (8, 9)) is None
    assert unsupported_reason("int8-wo", (7, 5)) is None and unsupported_reason("bf16", None) is None
    assert "200x slower" in unsupported_reason("int8-wo", (9, 0), compile=True)
    assert unsupported_reason("fp8", (9, 0), compile=True) is None


def test_the_device_script_names_its_results_file_with_the_probe_s_own_helper(monkeypatch,
                                                                             capsys):
    """scripts/device_probe.sh asks advisor.commands.probe.default_out for the file name: its
    Python snippet, run with a stand-in that checks the call against the real signature."""
    import inspect
    import re
    from pathlib import Path

    from advisor.commands import probe as probe_command

    script = (REPO_ROOT / "scripts" / "device_probe.sh").read_text()
    snippet = re.search(r"python3 -c '(.*?)'\)", script, re.S).group(1)
    real = inspect.signature(probe_command.default_out)

    def checked(*args, **kwargs):
        real.bind(*args, **kwargs)  # TypeError where the script calls it as it no longer is
        return Path("data/measurements/h100-sxm-80gb.jsonl")

    monkeypatch.setattr(probe_command, "default_out", checked)
    exec(compile(snippet, "device_probe.sh", "exec"), {})
    assert capsys.readouterr().out.strip() == "h100-sxm-80gb.jsonl"


def test_the_device_script_stops_on_another_gpu_than_expect_gpu_names(tmp_path):
    """EXPECT_GPU=H200 on a machine whose nvidia-smi names an H100: status 3 and why, before the
    wheels are installed (the wheel folder here is empty, which the install would refuse)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3'\n")
    smi.chmod(0o755)
    (tmp_path / "wheels").mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "OUT": str(tmp_path), "WHEELS": str(tmp_path / "wheels"), "EXPECT_GPU": "H200"}
    done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "device_probe.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert "EXPECT_GPU=H200, but this machine's GPU is 'NVIDIA H100 80GB HBM3'" in done.stderr
    assert sorted(tmp_path.iterdir()) == [bin_dir, tmp_path / "wheels"]  # nothing in OUT
