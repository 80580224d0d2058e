"""The settings beyond precision, attention, compile and offload: quantization scope, compile mode
and the VAE's compile and memory format, from the contract to grids, records, requests, the
search and the fit."""
from __future__ import annotations

import pytest

from advisor import MEASUREMENTS_DIR, records, workload
from advisor.contract import (
    COMPILE_MODES, EQUALITY_TOLERANCE, QUANT_SCOPES, Config, Setting, same_image,
    setting_problem, text_encoder_precision, with_precision,
)
from advisor.errors import AdvisorError
from advisor.request import Request
from advisor.search import variants
from probes import grids
from probes.sweep import order

MINIMAL = {"demand": {"images_per_s": 1}, "slo": {"p95_s": 10}}


def test_settings_that_name_nothing_or_cannot_run_are_problems():
    assert setting_problem(Setting("fp8", quant_scope="transformer")) is None
    assert "needs a quantized precision" in setting_problem(Setting(quant_scope="transformer"))
    assert "nothing is compiled" in setting_problem(Setting(compile_mode="reduce-overhead"))
    assert setting_problem(Setting(vae_compile=True, compile_mode="max-autotune")) is None
    assert "cannot run with offload model" in setting_problem(
        Setting(vae_compile=True, compile_mode="reduce-overhead", offload="model"))
    for mode in ("reduce-overhead", "max-autotune"):  # measured failing on the H100
        assert "regional compile" in setting_problem(Setting(compile=True, compile_mode=mode))
    assert setting_problem(Setting(compile=True, compile_mode="max-autotune-no-cudagraphs")) \
        is None
    assert "expected one of" in setting_problem(Setting(compile=True, compile_mode="fast"))


def test_the_text_encoder_runs_at_its_dtype_outside_the_scope():
    assert text_encoder_precision("fp8", "transformer") == "bf16"
    assert text_encoder_precision("fp8", "transformer+text_encoder") == "fp8"
    assert text_encoder_precision("bf16", QUANT_SCOPES[0]) == "bf16"
    scoped = Config(1024, 1024, precision="int8-wo", quant_scope="transformer")
    assert with_precision(scoped, "bf16").quant_scope == QUANT_SCOPES[0]
    assert with_precision(scoped, "fp8").quant_scope == "transformer"


def test_a_transformer_only_scope_keeps_the_text_encoder_weights_in_bf16():
    both, alone = (workload.weight_bytes("fp8", quant_scope=s) for s in QUANT_SCOPES)
    bf16 = workload.weight_bytes("bf16")
    assert alone["text_encoder"] == bf16["text_encoder"] > both["text_encoder"]
    assert alone["transformer"] == both["transformer"] < bf16["transformer"]
    assert alone["total"] - both["total"] == bf16["text_encoder"] - both["text_encoder"]


def test_labels_and_families_tell_the_settings_apart():
    config = Config(1024, 1024, precision="fp8", compile=True, quant_scope="transformer",
                    compile_mode="reduce-overhead", vae_compile=True, vae_channels_last=True)
    assert config.label() == "1024x1024 b1 fp8 native compile+vae mode=reduce-overhead te=bf16"
    assert Setting(vae_compile=True, vae_channels_last=True).label == "bf16 native vae=opt"
    assert config.family() != Config(1024, 1024, precision="fp8", compile=True).family()


def test_records_keep_their_keys_and_check_the_new_fields():
    old = Config(512, 512).record()
    legacy = {k: v for k, v in old.items() if k not in records.SETTING_OPTIONAL}
    assert records.config_key(old) == records.config_key(legacy)
    scoped = Config(512, 512, precision="fp8", quant_scope="transformer").record()
    assert records.config_key(scoped) != records.config_key(
        Config(512, 512, precision="fp8").record())
    record = {"config": {**old, "compile_mode": "fastest"}}
    assert any("config.compile_mode" in p for p in records._check_config(record["config"]))


def test_a_listed_grid_runs_its_groups_in_order_and_merges_directives():
    grid = {"order": "listed", "defaults": {"shapes": [[512, 512]]}, "groups": [
        {"precision": "fp8", "quant_scope": "transformer", "compile": True},
        {"precision": "bf16"},
        {"precision": "fp8", "quant_scope": "transformer", "compile": True,
         "check_equality": True, "end_to_end": True},
    ]}
    configs = order(grids.expand(grid, "test"))
    assert [c.precision for c in configs] == ["fp8", "bf16"]
    assert configs[0].check_equality and configs[0].end_to_end and configs[0].priority == 1
    by_pipeline = order(grids.expand({**grid, "order": "pipeline"}, "test"))
    assert [c.precision for c in by_pipeline] == ["bf16", "fp8"]


@pytest.mark.parametrize("group, message", [
    ({"quant_scope": "transformer"}, "needs a quantized precision"),
    ({"compile_mode": "max-autotune"}, "nothing is compiled"),
    ({"compile_mode": "turbo", "compile": True}, "compile_mode: expected one of"),
    ({"vae_compile": "yes"}, "vae_compile: expected bool"),
])
def test_a_grid_refuses_settings_that_cannot_run(group, message):
    with pytest.raises(AdvisorError, match=message):
        grids.expand({"groups": [{"shapes": [[512, 512]], **group}]}, "test")
    with pytest.raises(AdvisorError, match="order: expected one of pipeline, listed"):
        grids.expand({"order": "random", "groups": [{"shapes": [[512, 512]]}]}, "test")


def test_the_shipped_fastest_grid_expands():
    name, configs = grids.load_grid("data/grids/fastest.yaml")
    assert name == "fastest" and configs
    first = order(configs)[0]
    assert (first.precision, first.quant_scope, first.vae_compile, first.check_equality) == (
        "fp8", "transformer", True, True)


def test_a_request_names_the_new_settings_and_the_search_varies_them():
    req = Request.from_dict({**MINIMAL, "settings": {
        "precisions": ["bf16", "fp8"], "quant_scope": ["transformer"],
        "compile_mode": ["default", "reduce-overhead"], "vae_compile": [True],
        "vae_channels_last": [False, True]}})
    assert Request.from_dict(req.to_dict()) == req
    plain = variants(Setting("bf16"), req)
    assert {(s.quant_scope, s.compile_mode) for s in plain} == {
        (QUANT_SCOPES[0], "default"), (QUANT_SCOPES[0], "reduce-overhead")}  # the VAE compiles
    assert len(plain) == 4 and all(s.vae_compile for s in plain)
    fp8 = variants(Setting("fp8", compile=True, offload="none"), req)
    assert {s.quant_scope for s in fp8} == {"transformer"}
    assert not variants(Setting("bf16", compile=True, offload="model"),
                        Request.from_dict({**MINIMAL, "settings": {
                            "compile_mode": ["reduce-overhead"], "vae_compile": [False]}}))
    defaults = Request.from_dict(MINIMAL)
    assert defaults.compile_mode == ("default",) and defaults.vae_channels_last == (False, True)
    assert variants(Setting("bf16"), defaults) == [Setting("bf16")]  # eager: the plain VAE
    assert [(s.vae_compile, s.vae_channels_last) for s in variants(
        Setting("bf16", compile=True), defaults)] == [(False, False), (True, True)]  # a pair
    assert len(variants(Setting("fp8", compile=True), defaults)) == 4  # and both scopes
    assert set(COMPILE_MODES) > set(defaults.compile_mode)
    with pytest.raises(AdvisorError, match="settings.compile_mode"):
        Request.from_dict({**MINIMAL, "settings": {"compile_mode": ["fast"]}})
    with pytest.raises(AdvisorError, match="settings.vae_compile"):
        Request.from_dict({**MINIMAL, "settings": {"vae_compile": "yes"}})


def test_the_shipped_gpu_runs_give_the_plain_settings_image():
    """The settings that should not change the image (compile, the compiled channels-last VAE,
    the attention backend) gave the plain setting's latents and images on the same synthetic
    weights and seed, within the stated tolerance: the GPU run's own record of it
    (results.equality). A compiled transformer differs in the last bits (so the check compared
    two pipelines); an eager channels-last VAE leaves the latents alone, and cuDNN attention is
    what native attention picked on the H100: both exactly equal."""
    checked = [r for path in records.measurement_files(MEASUREMENTS_DIR)
               for r in records.read_records(path)[0]
               if r["status"] == "ok" and "equality" in r["results"]]
    assert "h100-sxm-80gb" in {r["gpu"]["catalog_id"] for r in checked}
    for r in checked:
        eq = r["results"]["equality"]
        assert eq["steps"] == r["config"]["steps"] and eq["latents_max_abs"] > 0
        assert same_image(eq) and eq["same_image"], Config.from_record(r["config"]).label()
        assert 0 <= eq["latents_max_abs_diff"] <= EQUALITY_TOLERANCE["latents_rel"] * \
            eq["latents_max_abs"]
        if r["config"]["compile"]:
            assert eq["latents_max_abs_diff"] > 0
