"""The probe's new settings on the tiny architecture on CPU: the equality check against the
plain setting, the quantization scope, the VAE's memory format and compile, and the memory
refusal before any work."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from advisor.contract import same_image  # noqa: E402
from advisor.errors import AdvisorError  # noqa: E402
from probes import pipeline  # noqa: E402
from tests import test_probe  # noqa: E402
from tests.test_probe import CPU, configs, labels, read, run  # noqa: E402

one_thread = test_probe.one_thread  # autouse here too: the tiny models on one thread


def test_equality_of_a_channels_last_vae_and_a_transformer_only_scope(tmp_path):
    """The equality check runs the config and its plain setting on the same weights and seed:
    a channels-last VAE leaves the latents unchanged; int8-wo of the transformer alone leaves
    the text encoder unquantized and is recorded so."""
    out = tmp_path / "r.jsonl"
    run(out, configs({"shapes": [[64, 64]], "vae_channels_last": [False, True],
                      "check_equality": True},
                     {"shapes": [[64, 64]], "precision": "int8-wo", "quant_scope": "transformer"}))
    found, problems = read(out)
    assert problems == [] and [r["status"] for r in found] == ["ok"] * 3
    by_label = dict(zip(labels(found), found))
    checked = by_label["64x64 b1 bf16 native vae=nhwc steps=2"]["results"]["equality"]
    assert checked["latents_max_abs_diff"] == 0.0 and checked["latents_max_abs"] > 0
    assert checked["same_image"] == same_image(checked) and checked["steps"] == 2
    assert "equality" not in by_label["64x64 b1 bf16 native steps=2"]["results"]  # plain: nothing to do
    scoped = by_label["64x64 b1 int8-wo native te=bf16 steps=2"]
    assert scoped["config"]["quant_scope"] == "transformer"
    assert list(scoped["quantization"]["layers_quantized"]) == ["transformer"]


def test_placing_a_pipeline_sets_the_vae_memory_format_and_compiles_what_it_names(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **kw: compiled.append((type(self).__name__, kw)))
    key = pipeline.LoadKey("bf16", True, "none", compile_mode="max-autotune-no-cudagraphs",
                           vae_compile=True, vae_channels_last=True)
    loaded = pipeline.load(key, CPU, None, tiny=True)
    conv = loaded.pipe.vae.decoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert {name for name, _ in compiled} == {"ZImageTransformerBlock", "Decoder"}
    assert all(kw == {"fullgraph": True, "mode": "max-autotune-no-cudagraphs"}
               for _, kw in compiled)


def test_the_probe_refuses_weights_larger_than_the_gpu_before_any_work():
    from advisor.commands.probe import check_memory

    scoped = configs({"shapes": [[512, 512]], "precision": "fp8", "quant_scope": "transformer"})
    check_memory(scoped, 24.0)
    check_memory(scoped, None)  # CPU: nothing to check
    with pytest.raises(AdvisorError, match="19.1 GiB on the GPU .built in bf16, then 13.4 GiB"):
        check_memory(scoped, 16.0)
