"""Probe grids: built-in contents, YAML files, ordering and the OOM skip rule (no torch needed
beyond what probes.sweep imports)."""
from __future__ import annotations

import itertools

import pytest

pytest.importorskip("diffusers")

from advisor import REPO_ROOT  # noqa: E402
from advisor.contract import QUANTIZATIONS  # noqa: E402
from advisor.errors import AdvisorError  # noqa: E402
from probes import grids, sweep  # noqa: E402
from probes.grids import Config  # noqa: E402
from probes.pipeline import LoadKey  # noqa: E402


def by(configs, **fields):
    return [c for c in configs if all(getattr(c, k) == v for k, v in fields.items())]


def test_standard_grid_is_the_shipped_data_set():
    _, configs = grids.load_grid("standard")
    bf16 = by(configs, precision="bf16", attention="native", compile=False, offload="none",
              guidance_scale=0.0, caption_tokens=64)
    shapes = {(c.height, c.width) for c in bf16}
    assert {(s, s) for s in (512, 768, 1024, 1280, 1536, 2048)} <= shapes
    assert len([s for s in shapes if s[0] != s[1]]) >= 3
    assert {c.batch for c in by(bf16, height=1024, width=1024)} == {1, 2, 4, 8, 16}
    assert max(c.pixels * c.batch for c in configs) <= 16 * grids.MEGAPIXEL
    for precision in ("fp16", "fp32", "fp32-tf32"):
        assert {(c.height, c.batch) for c in by(configs, precision=precision)} == \
            {(512, 1), (512, 4), (1024, 1), (1024, 4)}
    for attention in ("cudnn", "flash"):
        assert {c.batch for c in by(configs, attention=attention, height=1024)} == {1, 4}
    assert {c.batch for c in by(configs, compile=True, height=1024)} == {1, 4}
    assert {c.offload for c in by(configs, height=1024, batch=1)} == {"none", "model", "sequential"}
    assert {c.batch for c in configs if c.cfg} == {1, 4}
    assert any(c.end_to_end for c in by(configs, height=1024, batch=1, compile=False))
    assert len(configs) == len(set(configs))


def test_quick_grid_touches_every_code_path():
    _, configs = grids.load_grid("quick")
    assert {c.precision for c in configs} == {"bf16", "fp16", "fp32", "fp32-tf32"}
    assert {c.attention for c in configs} == {"native", "cudnn", "flash"}
    assert {c.offload for c in configs} == {"none", "model", "sequential"}
    assert any(c.compile for c in configs) and any(c.cfg for c in configs)
    assert any(c.end_to_end for c in configs)


def test_full_grid_expands():
    _, configs = grids.load_grid("full")
    assert len(configs) > 200


def test_yaml_grid_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("defaults: {steps: 4}\n"
                    "groups:\n"
                    "  - shapes: [[512, 512], [768, 1344]]\n"
                    "    batch: [1, 2]\n"
                    "  - shapes: [[512, 512]]\n"
                    "    guidance_scale: 4\n"
                    "    end_to_end: true\n")
    name, configs = grids.load_grid(str(path))
    assert name == "mine"
    assert len(configs) == 5 and all(c.steps == 4 for c in configs)
    cfg = by(configs, guidance_scale=4.0)
    assert cfg[0].end_to_end and isinstance(cfg[0].guidance_scale, float)


def test_yaml_grid_with_vae_modes_and_group_offload(tmp_path):
    path = tmp_path / "small-cards.yaml"
    path.write_text("groups:\n"
                    "  - shapes: [[1024, 1024]]\n"
                    "    vae: [full, tiling, slicing, tiling+slicing]\n"
                    "  - shapes: [[1024, 1024]]\n"
                    "    offload: group\n")
    _, configs = grids.load_grid(str(path))
    assert [c.vae for c in configs] == ["full", "tiling", "slicing", "tiling+slicing", "full"]
    assert configs[-1].offload == "group" and configs[-1].label().endswith("offload=group")
    assert all(c.memory_cap_gib is None for c in configs)
    assert configs[1].label() == "1024x1024 b1 bf16 native vae=tiling"


def test_memory_caps_grid_is_the_shipped_capped_data_set():
    _, every = grids.load_grid(str(REPO_ROOT / "data/grids/memory-caps.yaml"))
    quantized = [c for c in every if c.precision in QUANTIZATIONS]
    assert {(c.precision, c.height, c.batch) for c in quantized} == \
        {(p, s, 1) for p in QUANTIZATIONS for s in (1024, 1536)} | {("int8-wo", 1024, 2),
                                                                   ("int8-wo", 1024, 4)}
    configs = [c for c in every if c not in quantized]
    plain = by(configs, vae="full", offload="none")
    assert all(c.precision == "bf16" for c in configs)
    assert all(not c.compile and c.attention == "native" and c.offload == "none"
               for c in quantized) and all(not c.compile for c in every)
    assert {(c.height, c.width) for c in plain} == \
        {(s, s) for s in (512, 768, 1024, 1280, 1536)} | {(768, 1344), (1344, 768)}
    assert all({c.batch for c in by(plain, height=h, width=w)} == {1, 2, 4}
               for h, w in {(c.height, c.width) for c in plain})
    for size in (1024, 1536):
        settings = {(c.vae, c.offload, c.batch) for c in configs
                    if c.height == c.width == size and (c.vae, c.offload) != ("full", "none")}
        assert settings == {("tiling", "none", 1), ("slicing", "none", 1), ("slicing", "none", 2),
                            ("full", "model", 1), ("full", "sequential", 1), ("full", "group", 1)}


def test_duplicates_merge_and_keep_end_to_end():
    configs = grids.expand({"groups": [{"shapes": [[512, 512]]},
                                       {"shapes": [[512, 512]], "end_to_end": True}]}, "t")
    assert len(configs) == 1 and configs[0].end_to_end


@pytest.mark.parametrize("group, message", [
    ({"shapes": [[500, 512]]}, "height: expected a positive multiple of 16, got 500"),
    ({"shapes": [[512, 512]], "precision": "int4"}, "precision: expected one of"),
    ({"shapes": [[512, 512]], "batchsize": 2}, "unknown key 'batchsize'"),
    ({"shapes": [[512, 512]], "caption_tokens": 600}, "caption_tokens: expected 1..max_sequence"),
    ({"shapes": [[512, 512]], "compile": "yes"}, "compile: expected bool"),
    ({"shapes": [512, 512]}, "shapes: expected [height, width]"),
    ({"batch": 2}, "shapes: expected a list"),
    ({"shapes": [[512, 512]], "vae": "tiles"}, "vae: expected one of full, tiling"),
    ({"shapes": [[512, 512]], "offload": "disk"}, "offload: expected one of none, model, "
                                                  "sequential, group"),
    ({"shapes": [[512, 512]], "memory_cap_gib": 20}, "unknown key 'memory_cap_gib'"),
])
def test_bad_grid_names_file_group_and_field(tmp_path, group, message):
    path = tmp_path / "bad.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"groups": [{"shapes": [[256, 256]]}, group]}))
    with pytest.raises(AdvisorError) as err:
        grids.load_grid(str(path))
    assert str(path) in str(err.value) and "group 2" in str(err.value)
    assert message in str(err.value)


def test_unknown_grid_name():
    with pytest.raises(AdvisorError, match="quick, standard, full or a YAML grid file"):
        grids.load_grid("quik")


def test_order_loads_each_pipeline_once_and_ascends_within_a_family():
    _, configs = grids.load_grid("standard")
    ordered = sweep.order(configs)
    keys = [LoadKey.of(c) for c in ordered]
    runs = [k for k, _ in itertools.groupby(keys)]
    assert len(runs) == len(set(runs))  # every pipeline is loaded exactly once
    attentions = [c.attention for c in ordered if LoadKey.of(c) == runs[0]]
    assert [a for a, _ in itertools.groupby(attentions)] == ["native", "cudnn", "flash"]
    for _, family in itertools.groupby(ordered, key=Config.family):
        work = [c.pixels * c.batch for c in family]
        assert work == sorted(work)


def test_dominated_is_per_family_and_needs_both_pixels_and_batch():
    oom = Config(1024, 1024, batch=4)
    assert sweep.dominated(Config(1024, 1024, batch=8), [oom])
    assert sweep.dominated(Config(2048, 2048, batch=4), [oom])
    assert not sweep.dominated(Config(2048, 2048, batch=1), [oom])
    assert not sweep.dominated(Config(512, 512, batch=16), [oom])
    assert not sweep.dominated(Config(1024, 1024, batch=8, precision="fp16"), [oom])


def test_cpu_runs_drop_cuda_only_configs(capsys):
    from advisor.commands.probe import cpu_runnable
    _, configs = grids.load_grid("quick")
    kept = cpu_runnable(configs)
    assert kept and all(not c.compile and c.offload == "none" and c.attention == "native"
                        and c.precision in ("bf16", "fp32") for c in kept)
    assert "need CUDA" in capsys.readouterr().out
