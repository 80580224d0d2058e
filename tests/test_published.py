"""Published third-party measurements: loading, and the `published` validation split."""
from __future__ import annotations

import math
import re

import pytest

from advisor.contract import Config
from advisor.errors import AdvisorError
from advisor.published import STACKS, load_published
from advisor.published_split import published_split
from advisor.validation import format_table
from tests.fake_models import FakeModels


def test_shipped_points_load_and_the_trusted_ones_are_scoreable():
    points = load_published()
    assert len({p.id for p in points}) == len(points)
    scored = [p for p in points if p.scored]
    assert scored and all(p.trusted and p.gpu and p.config for p in scored)
    rtx = next(p for p in points if p.id == "mrdbourke-rtx4090-diffusers-bf16-1024-b1")
    assert rtx.config == Config(1024, 1024, 1, steps=9) and rtx.seconds_per_image == 4.8713
    # quantized and unknown-precision points are kept for the record, never modelled
    assert any(p.config is None and not p.scored for p in points)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "expected a mapping with a `points` list"),
    ("points: [7]", "points[0]: expected a mapping, got 7"),
    ("points: [{id: a}]", "points[0] (a): trusted: expected bool"),
    ("points: [{id: a, trusted: true, stack: diffusers, seconds_per_image: {value: -3}}]",
     "points[0] (a): seconds_per_image.value: expected a number > 0, got -3"),
    ("points: [{id: a, trusted: true, stack: diffusers, seconds_per_image: {value: '4 s'}}]",
     "got '4 s'"),
    ("points: [{id: a, trusted: true, stack: tensorrt}]",
     "points[0] (a): stack: expected one of diffusers, comfyui, sd.cpp, sglang, vllm-omni, "
     "lightx2v, other, unknown, got 'tensorrt'"),
    ("points: [{id: a, trusted: true}]", "points[0] (a): stack: expected one of diffusers"),
    ("points: [{id: a, trusted: true, stack: sglang, stack_version: [1, 2]}]",
     "points[0] (a): stack_version: expected a version string or null, got [1, 2]"),
    ("points: [{id: a, trusted: true, stack: diffusers, seconds_per_image: {value: 1e9}}]",
     "points[0] (a): seconds_per_image.value: expected 0.001..10000 s"),
    ("points: [{id: a, trusted: true, stack: diffusers, seconds_per_forward: 1e-300}]",
     "points[0] (a): seconds_per_forward.value: expected 0.001..10000 s"),
    ("points: [{id: a, trusted: true, stack: diffusers, height: '1024'}]",
     "points[0] (a): height: expected an integer 16..8192 or null, got '1024'"),
    ("points: [{id: a, trusted: true, stack: diffusers, batch: 1e9}]",
     "points[0] (a): batch: expected an integer 1..1024 or null"),
    ("points: [{id: a, trusted: true, stack: diffusers, transformer_forwards: 9}]",
     "points[0] (a): transformer_forwards: expected a mapping"),
    ("points: [{id: a, trusted: true, stack: diffusers, transformer_forwards: {count: 0}}]",
     "points[0] (a): transformer_forwards: count: expected an integer 1..1000"),
    ("points: [{id: a, trusted: true, stack: diffusers, precision: bf16, height: 1000, "
     "width: 1024, batch: 1, transformer_forwards: {count: 9}}]",
     "points[0] (a): height: expected a positive multiple of 16"),
    ("points: [{id: a, trusted: true, stack: diffusers, catalog_id: [h100]}]",
     "points[0] (a): catalog_id: expected text or null"),
])
def test_a_malformed_file_names_the_point_and_field(tmp_path, text, message):
    path = tmp_path / "points.yaml"
    path.write_text(text)
    with pytest.raises(AdvisorError, match=re.escape(message)):
        load_published(path)


def test_the_split_scores_end_to_end_and_per_forward_figures(tmp_path):
    path = tmp_path / "points.yaml"
    path.write_text("""points:
  - {id: e2e, catalog_id: rtx-4090, trusted: true, stack: diffusers, precision: bf16,
     height: 1024, width: 1024, batch: 2, transformer_forwards: {count: 9},
     seconds_per_image: {value: 1.0}}
  - {id: step, catalog_id: rtx-4090, trusted: true, stack: diffusers, precision: bf16,
     height: 512, width: 512, batch: 1, transformer_forwards: {count: 9},
     seconds_per_forward: {value: 0.1}}
  - {id: gguf, catalog_id: rtx-4090, trusted: false, stack: comfyui, precision: gguf-q4,
     height: 1024, width: 1024, batch: 1, transformer_forwards: {count: 9},
     seconds_per_image: {value: 9.0}}
""")
    models = FakeModels()
    split = published_split(models, load_published(path))
    assert split["n"] == 2 and split["points_total"] == 3 and split["untrusted"] == 1
    e2e, step = split["rows"]
    pred = models.predict("rtx-4090", Config(1024, 1024, 2))
    assert e2e["predicted"] == pytest.approx(pred.latency.total_s / 2)
    assert e2e["error_pct"] == pytest.approx(100 * (pred.latency.total_s / 2 - 1.0))
    one = models.predict("rtx-4090", Config(512, 512, 1))
    assert step["figure"] == "s/forward"
    assert step["predicted"] == pytest.approx(one.latency.denoise_step_s)
    lo, hi = step["interval"]
    assert lo < step["predicted"] < hi and step["inside"] == (lo <= 0.1 <= hi)
    assert split["mape"] == pytest.approx((abs(e2e["error_pct"]) + abs(step["error_pct"])) / 2)
    assert split["by_gpu"] == {"rtx-4090": split["mape"]}
    assert split["other_software"] == [] and split["n_other_software"] == 0


def test_transferred_intervals_take_their_family_width_from_published_points(tmp_path):
    """A GPU of an architecture never probed gets the architecture term of its family (compute
    capability) from a prior updated by the published diffusers points of that family; the
    published split sets each point's term from the other points only."""
    from advisor.calibration import fit_calibrated
    from advisor.intervals import ArchitectureWidth
    from tests.synthetic import SQUARES_GRID, gpu_specs, synthetic_records, with_sources

    specs = gpu_specs()
    records = with_sources(synthetic_records(grid=SQUARES_GRID))
    plain = fit_calibrated(records, specs)
    guess = plain.predict("rtx-4090", Config(1024, 1024)).latency.total_s
    path = tmp_path / "points.yaml"
    path.write_text(f"""points:
  - {{id: far, catalog_id: rtx-4090, trusted: true, stack: diffusers, precision: bf16,
     height: 1024, width: 1024, batch: 1, transformer_forwards: {{count: 9}},
     seconds_per_image: {{value: {3 * guess}}}}}
  - {{id: near, catalog_id: l40s-48gb, trusted: true, stack: diffusers, precision: bf16, height: 1024,
     width: 1024, batch: 1, transformer_forwards: {{count: 9}},
     seconds_per_image: {{value: {plain.predict("l40s-48gb", Config(1024, 1024)).latency.total_s}}}}}
""")
    points = load_published(path)
    widened = fit_calibrated(records, specs, published=points + other_software_points(
        tmp_path, {"rtx-4090": 10 * guess}))
    [(far_id, far_miss), (near_id, near_miss)] = widened.published_misses["8.9"]  # both Ada
    assert (far_id, near_id) == ("far", "near") and set(widened.published_misses) == {"8.9"}
    assert far_miss == pytest.approx(math.log(3), abs=0.01) and abs(near_miss) < 0.01
    width = ArchitectureWidth.of("8.9", widened.published_misses["8.9"]).half_width
    pred = widened.predict("rtx-4090", Config(1024, 1024))
    assert math.log(pred.latency.interval_s[1] / pred.latency.total_s) > width > math.log(2)
    assert "2 published diffusers point(s)" in pred.latency.basis
    other_family = plain.predict("rtx-5090", Config(1024, 1024))  # capability 12.0: the prior
    assert "no published diffusers point of it" in other_family.latency.basis
    probed = widened.predict("h100-sxm-80gb", Config(768, 768))
    assert "published" not in probed.latency.basis
    split = published_split(plain, points)
    far, near = split["rows"]
    assert not far["inside"]  # the other point missed by nothing: a narrow term from it
    assert near["inside"] and near["interval"][1] > 2 * near["predicted"]
    assert "from the other points of its family only" in split["description"]


def other_software_points(tmp_path, figures: dict) -> list:
    """Trusted points of software this tool does not model (ComfyUI), one per GPU and figure
    (seconds per image at 1024x1024 b1 bf16, 9 forwards): they must change no miss."""
    path = tmp_path / "other.yaml"
    path.write_text("points:\n" + "".join(
        f"  - {{id: comfy-{gpu}, catalog_id: {gpu}, trusted: true, stack: comfyui, "
        f"stack_version: 0.16.4, precision: bf16, height: 1024, width: 1024, batch: 1, "
        f"transformer_forwards: {{count: 9}}, seconds_per_image: {{value: {value}}}}}\n"
        for gpu, value in figures.items()))
    return load_published(path)


def test_other_software_is_listed_apart_with_its_ratio_and_scores_no_miss(tmp_path):
    """A trusted point of another stack is in no MAPE, coverage or per-GPU figure, and the
    split lists it in `other_software` with its ratio to the predicted diffusers time."""
    models = FakeModels()
    path = tmp_path / "points.yaml"
    path.write_text("""points:
  - {id: diff, catalog_id: rtx-4090, trusted: true, stack: diffusers, stack_version: 0.36.0,
     precision: bf16, height: 1024, width: 1024, batch: 1, transformer_forwards: {count: 9},
     seconds_per_image: {value: 1.0}}
  - {id: sdcpp, catalog_id: rtx-4090, trusted: true, stack: sd.cpp, precision: bf16,
     height: 512, width: 512, batch: 1, transformer_forwards: {count: 9},
     seconds_per_forward: {value: 0.5}}
""")
    points = load_published(path) + other_software_points(tmp_path, {"l40s-48gb": 7.0})
    assert [(p.stack, p.modelled_stack, p.scored) for p in points] == [
        ("diffusers", True, True), ("sd.cpp", False, True), ("comfyui", False, True)]
    assert points[0].stack_version == "0.36.0" and points[2].stack_version == "0.16.4"
    split = published_split(models, points)
    (diff,) = split["rows"]
    assert diff["id"] == "diff" and split["n"] == 1 and split["modelled_stack"] == "diffusers"
    assert split["mape"] == pytest.approx(abs(diff["error_pct"]))
    assert split["by_gpu"] == {"rtx-4090": split["mape"]}  # no l40s-48gb: ComfyUI only there
    assert split["coverage"] == (100.0 if diff["inside"] else 0.0)
    # the diffusers point's interval is not widened by the other stacks' misses
    alone = published_split(models, points[:1])["rows"][0]
    assert diff["interval"] == alone["interval"]
    sdcpp, comfy = split["other_software"]
    assert split["n_other_software"] == 2
    step = models.predict("rtx-4090", Config(512, 512, 1)).latency.denoise_step_s
    assert (sdcpp["id"], sdcpp["stack"], sdcpp["figure"]) == ("sdcpp", "sd.cpp", "s/forward")
    assert sdcpp["predicted"] == pytest.approx(step)
    assert sdcpp["ratio"] == pytest.approx(0.5 / step)
    total = models.predict("l40s-48gb", Config(1024, 1024, 1)).latency.total_s
    assert comfy["ratio"] == pytest.approx(7.0 / total) and comfy["stack_version"] == "0.16.4"
    assert "inside" not in comfy and "interval" not in comfy
    text = format_table(report_with(split))
    block = text[text.index("other software, not scored and feeding no interval"):]
    assert f"ratio {7.0 / total:.2f} comfyui 0.16.4 (comfy-l40s-48gb)" in block
    assert "(diff)" not in block and "(diff)" in text


def test_shipped_points_name_their_stack_and_only_diffusers_ones_are_misses():
    points = {p.id: p for p in load_published()}
    assert all(p.stack in STACKS for p in points.values())
    assert points["mrdbourke-rtx4090-diffusers-bf16-1024-b1"].modelled_stack
    sdcpp = points["sdcpp-pr1228-rtx4090-bf16-512-after"]
    assert sdcpp.trusted and sdcpp.scored and sdcpp.stack == "sd.cpp" and not sdcpp.modelled_stack
    h200 = {p.stack: p.seconds_per_image for p in points.values() if p.id.startswith("diffbench-")}
    assert h200 == {"sglang": 1.35, "vllm-omni": 2.954, "lightx2v": 4.012}
    split = published_split(FakeModels(), list(points.values()))
    assert {r["id"] for r in split["rows"]} == {
        i for i, p in points.items() if p.scored and p.modelled_stack}
    assert {r["id"] for r in split["other_software"]} == {
        i for i, p in points.items() if p.scored and not p.modelled_stack}


def report_with(published: dict) -> dict:
    """The smallest report format_table prints a published block of."""
    metric = {t: {"n": 0, "mape": None, "median_ape": None, "max_ape": None, "coverage": None}
              for t in ("total_s", "denoise_step_s", "allocated_memory", "peak_memory")}
    from advisor.validation import SPLITS
    return {"metrics": {s: dict(metric) for s in SPLITS},
            "quantized": {"metrics": {}, "unscored": {}, "description": ""},
            "settings": {"metrics": {}, "description": ""},
            "splits": {}, "published": published,
            "data": {"ok": 0, "oom": 0, "gpus": {}, "weights": [], "problems": []},
            "verdicts": {}}
