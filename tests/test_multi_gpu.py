"""Several GPUs of one host: the `config.parallel` layout in records, grids and the
CLI; data-parallel replicas run end to end as CPU worker processes on the tiny pipeline (the
barrier, the untimed calls that keep every GPU busy, the record's per-GPU and aggregate figures,
resume); a config split across GPUs refused without cache-dit, and run end to end on CPU (gloo)
where cache-dit is installed; multi-GPU records kept out of the single-GPU fit."""
from __future__ import annotations

import importlib.util
import json
import threading
import time

import pytest

from advisor.cli import main
from advisor.contract import Config, Parallel
from advisor.errors import AdvisorError
from advisor.records import config_key, is_single_gpu, load_measurements, read_records, validate_record
from tests.synthetic import BASE_CONFIG, make_record

# The key of a config of the shipped records, as records.config_key wrote it before `parallel`.
OLD_KEY = ('{"attention":"native","batch":1,"caption_tokens":64,"compile":false,'
           '"guidance_scale":0.0,"height":1024,"max_sequence_length":512,"memory_cap_gib":null,'
           '"offload":"none","precision":"bf16","steps":9,"vae":"full","width":1024}')
DATA2 = {"mode": "data", "gpus": 2}
TWO_CONFIGS = "groups:\n  - shapes: [[128, 128]]\n    batch: [1, 2]\n    steps: 2\n"


def multi_record(parallel=DATA2, **results):
    record = make_record(parallel=parallel)
    record["results"].update({
        "aggregate_img_per_s": 2 * record["results"]["img_per_s"],
        "replicas": [{"index": i, "total_s": 1.0, "img_per_s": 1.0}
                     for i in range(parallel["gpus"])], **results})
    return record


def test_single_gpu_keys_stay_those_of_the_shipped_records():
    assert config_key(BASE_CONFIG) == OLD_KEY
    assert config_key({**BASE_CONFIG, "parallel": {"mode": "none", "gpus": 1}}) == OLD_KEY
    data2 = config_key({**BASE_CONFIG, "parallel": DATA2})
    assert data2 != OLD_KEY and data2 != config_key({**BASE_CONFIG, "parallel": {"mode": "data",
                                                                                   "gpus": 4}})
    config = Config(1024, 1024, parallel=Parallel("ulysses", 4))
    assert Config.from_record(config.record()) == config
    assert "parallel" not in Config(1024, 1024).record()
    assert config.label() == "1024x1024 b1 bf16 native ulyssesx4"


@pytest.mark.parametrize("parallel, expected", [
    ({"mode": "data", "gpus": 1}, "config.parallel.gpus: expected 1 with mode none, 2 or more"),
    ({"mode": "none", "gpus": 2}, "config.parallel.gpus: expected 1 with mode none"),
    ({"mode": "tensor", "gpus": 2}, "config.parallel.mode: expected one of none, data, ulysses"),
    ({"mode": "data"}, "config.parallel.gpus: missing"),
    ("data", "config.parallel: expected an object"),
])
def test_bad_layouts_are_invalid_records(parallel, expected):
    problems = validate_record(make_record(parallel=parallel))
    assert any(p.startswith(expected) for p in problems), problems


def test_multi_gpu_records_are_valid_and_kept_out_of_the_single_gpu_fit(tmp_path):
    good = multi_record(host_cpu_pct=35.0, host_ram_used_mb=9000.0, together_s=4.2)
    assert validate_record(good) == []
    bad = multi_record(replicas=[{"index": 0, "total_s": "fast", "img_per_s": 1.0}])
    assert validate_record(bad) == ["results.replicas[0].total_s: expected a number, got 'fast'"]
    lines = [make_record(), good, multi_record(parallel={"mode": "ring", "gpus": 4}),
             make_record(parallel={"mode": "none", "gpus": 1})]
    (tmp_path / "h100-sxm-80gb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    single, problems = load_measurements(tmp_path)
    assert problems == [] and [r["_source"] for r in single] == ["h100-sxm-80gb.jsonl:1",
                                                                 "h100-sxm-80gb.jsonl:4"]
    everything, _ = load_measurements(tmp_path, single_gpu=False)
    assert len(everything) == 4 and [is_single_gpu(r) for r in everything] == [True, False,
                                                                                False, True]


def test_grid_parallel_key(tmp_path):
    from probes import grids

    configs = grids.expand({"groups": [{"shapes": [[512, 512]], "parallel": [
        DATA2, {"mode": "ulysses", "gpus": 4}]}]}, "test")
    assert [c.parallel for c in configs] == [Parallel("data", 2), Parallel("ulysses", 4)]
    for bad, message in ((["data", 2], "expected {mode: data|ulysses|ring, gpus: N}"),
                         ({"mode": "ring", "gpus": 1}, "gpus: expected 1 with mode none")):
        with pytest.raises(AdvisorError, match=message.replace("|", r"\|")):
            grids.expand({"groups": [{"shapes": [[512, 512]], "parallel": bad}]}, "test")


def test_together_keeps_the_fast_replica_busy_until_every_timed_call_ends():
    """Two replicas in threads: the one whose timed calls end first keeps calling (untimed)
    until the slow one's end, and both started their timed calls after the barrier."""
    import multiprocessing as mp

    from probes.replicas import Together

    barrier, done = threading.Barrier(2), mp.get_context("spawn").Value("i", 0)
    log = []

    def replica(name, timed_s):
        group = Together(barrier, done, 2)
        group.start()
        log.append((name, "start", time.perf_counter()))
        time.sleep(timed_s)
        group.finish(lambda: (log.append((name, "busy", time.perf_counter())), time.sleep(0.01)))
        log.append((name, "end", time.perf_counter()))

    threads = [threading.Thread(target=replica, args=a) for a in (("fast", 0.0), ("slow", 0.2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow_timed_end = next(t for n, what, t in log if n == "slow" and what == "end")
    busy = [t for n, what, t in log if n == "fast" and what == "busy"]
    assert len(busy) >= 5 and busy[-1] >= slow_timed_end - 0.25
    assert not [t for n, what, t in log if n == "slow" and what == "busy"]


def test_a_failure_names_its_gpu_not_the_replica_stopped_by_it():
    from probes.replicas import PartnerFailed, Reply, combine
    from probes.runs import Outcome

    config = Config(128, 128, parallel=Parallel("data", 2))
    replies = [Reply(0, Outcome(config, "error", None, f"{PartnerFailed.__name__}: another GPU's "
                                "worker failed this config"), None, None),
               Reply(1, Outcome(config, "oom", None, "OutOfMemoryError: CUDA out of memory",
                                "vae_decode"), None, None)]
    outcome = combine(config, config.parallel, replies, [], host=None)
    assert (outcome.status, outcome.failed_stage) == ("oom", "vae_decode")
    assert outcome.error == "GPU 1: OutOfMemoryError: CUDA out of memory"


def test_cli_data_parallel_on_two_cpu_workers_and_resume(tmp_path, capsys):
    grid, out = tmp_path / "two.yaml", tmp_path / "dp.jsonl"
    grid.write_text(TWO_CONFIGS)
    argv = ["probe", "--grid", str(grid), "--tiny", "--device", "cpu", "--out", str(out),
            "--gpus", "2"]
    assert main(argv) == 0
    assert "device: 2 x cpu" in capsys.readouterr().out
    found, problems = read_records(out)
    assert problems == [] and len(found) == 2
    for record in found:
        r = record["results"]
        assert record["status"] == "ok" and record["config"]["parallel"] == DATA2
        assert [g["index"] for g in r["replicas"]] == [0, 1]
        assert r["aggregate_img_per_s"] == pytest.approx(sum(g["img_per_s"] for g in r["replicas"]))
        # the record's figures are the slower replica's (the median of two, rounded up)
        assert r["total_s"] == max(g["total_s"] for g in r["replicas"])
        assert r["together_s"] > 0 and r["load_s"] == max(g["load_s"] for g in r["replicas"])
        assert 0 < r["host_cpu_pct"] <= 100 and r["host_ram_used_mb"] > 0
        assert all(g["process_cpu_pct"] is not None and g["process_rss_mb"] > 0
                   for g in r["replicas"])
    assert main(argv) == 0  # resume: both configs are done
    assert "2 of 2 configs already" in capsys.readouterr().out and len(read_records(out)[0]) == 2


def test_ctrl_c_finishes_the_config_on_every_gpu_and_the_time_limit_starts_no_workers(tmp_path):
    """Ctrl-C while two CPU workers measure: the config in progress is recorded, the sweep stops,
    the workers are gone. A spent time limit stops before any worker starts. Four configs, so
    that the interrupt lands before the last one however fast the first ones run."""
    import os
    import signal

    import psutil

    from probes import grids, runs, sweep

    configs = sweep.order(grids.expand({"defaults": {"steps": 2}, "groups": [
        {"shapes": [[128, 128], [128, 64]], "batch": [1, 2], "parallel": DATA2}]}, "test"))
    options = dict(configs=configs, device=__import__("torch").device("cpu"), grid="test",
                   weights="synthetic", tiny=True, budget_s=0.3)

    def workers():  # not multiprocessing's resource tracker, which lives as long as this process
        return [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]

    out = tmp_path / "dp.jsonl"
    done_before = []  # configs recorded when the interrupt was sent

    def interrupt_once_measuring():
        while len(workers()) < 2:
            time.sleep(0.05)
        time.sleep(1.0)  # the workers are starting or measuring a config
        done_before.append(len(read_records(out)[0]) if out.exists() else 0)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_measuring, daemon=True).start()
    summary = sweep.run(runs.Options(out=out, **options))
    found, problems = read_records(out)
    assert problems == [] and all(r["status"] == "ok" for r in found)
    assert len(found) == done_before[0] + 1  # the config in progress, recorded
    assert "Ctrl-C" in summary.stopped and summary.not_run
    assert len(found) + len(summary.not_run) == len(configs) == 4
    assert not workers()
    limited = sweep.run(runs.Options(out=tmp_path / "none.jsonl", limit_s=1e-3, **options))
    assert "time limit" in limited.stopped and limited.rows == [] and len(limited.not_run) == 4


@pytest.mark.parametrize("argv, message", [
    (["--split", "ulysses"], "--split ulysses needs --gpus N"),
    (["--gpus", "1", "--split", "ring"], "--gpus: expected 2 or more, to split an image across"),
    (["--gpus", "0"], "--gpus: expected a positive number, got 0"),
    (["--gpus", "2", "--memory-cap-gib", "20"], "--gpus N with a memory cap"),
    (["--gpus", "2", "--ray", "local", "--min-cap"], "--gpus N with a memory cap"),
    (["--ray", "local", "--emulate", "rtx-4090"], "--ray with a memory cap"),
])
def test_cli_refuses_bad_layouts(tmp_path, capsys, argv, message):
    out = ["--tiny", "--device", "cpu", "--out", str(tmp_path / "x.jsonl")]
    assert main(["probe", *argv, *out]) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_a_grid_with_layouts_under_gpus(tmp_path, capsys):
    grid = tmp_path / "layouts.yaml"
    grid.write_text("groups:\n  - shapes: [[128, 128]]\n    parallel: {mode: data, gpus: 2}\n")
    assert main(["probe", "--grid", str(grid), "--gpus", "4", "--tiny", "--device", "cpu",
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "the grid sets its own GPU layouts" in capsys.readouterr().err


def test_split_is_refused_without_cache_dit_or_with_compile(tmp_path, capsys, monkeypatch):
    from probes import split

    real = importlib.util.find_spec
    monkeypatch.setattr(split.importlib.util, "find_spec",
                        lambda name, *a: None if name == "cache_dit" else real(name, *a))
    argv = ["probe", "--grid", "quick", "--tiny", "--device", "cpu", "--gpus", "2", "--split",
            "ulysses", "--out", str(tmp_path / "x.jsonl")]
    assert main(argv) == 2
    assert "needs cache-dit and einops: pip install" in capsys.readouterr().err
    monkeypatch.undo()
    if split.missing() is None:
        with pytest.raises(AdvisorError, match="without compile or offload only"):
            split.check_configs([Config(512, 512, compile=True, parallel=Parallel("ring", 2))])


@pytest.mark.skipif(importlib.util.find_spec("cache_dit") is None
                    or importlib.util.find_spec("einops") is None,
                    reason="one image across GPUs needs cache-dit and einops (not in the dev "
                           "extra: pip install cache-dit einops)")
def test_ulysses_splits_one_image_over_two_cpu_processes(tmp_path):
    grid, out = tmp_path / "one.yaml", tmp_path / "split.jsonl"
    grid.write_text("groups:\n  - shapes: [[128, 128]]\n    steps: 2\n")
    assert main(["probe", "--grid", str(grid), "--tiny", "--device", "cpu", "--out", str(out),
                 "--gpus", "2", "--split", "ulysses"]) == 0
    (record,), problems = read_records(out)
    r = record["results"]
    assert problems == [] and record["status"] == "ok"
    assert record["config"]["parallel"] == {"mode": "ulysses", "gpus": 2}
    assert r["aggregate_img_per_s"] == r["img_per_s"] and r["parallel_library"]["name"] == "cache-dit"


def test_cli_ray_needs_ray_and_a_folder(tmp_path, capsys, monkeypatch):
    from advisor.commands import probe

    argv = ["probe", "--ray", "local", "--tiny", "--device", "cpu"]
    if importlib.util.find_spec("ray") is not None:
        (tmp_path / "file").write_text("")
        assert main([*argv, "--out", str(tmp_path / "file")]) == 2
        assert "with --ray, a folder (one file per GPU model)" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(probe.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert "--ray needs Ray: pip install -e '.[ray]'" in capsys.readouterr().err


def test_replicas_share_out_the_visible_gpus(monkeypatch):
    from probes.replicas import visible_devices

    assert visible_devices(3, "cpu") == ["", "", ""]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert visible_devices(2, "cuda") == ["4", "5"]
    with pytest.raises(AdvisorError, match=r"--gpus 8: this machine lets the probe use 4 GPU"):
        visible_devices(8, "cuda")
