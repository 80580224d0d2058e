"""The analytic cost model: exact parameter counts, reference FLOPs, CLI, and (with torch) tiny real
models whose parameter counts and FlopCounterMode FLOPs the same formulas must reproduce."""
from __future__ import annotations

import json
import shutil

import pytest

from advisor import ARCH_DIR, REPO_ROOT
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor import workload as w

# FlopCounterMode figures (DESIGN.md): (height, width, caption tokens) -> TFLOP per forward.
REFERENCE_TFLOPS = {
    (512, 512, 64): 12.90,
    (1024, 1024, 64): 55.61,
    (2048, 2048, 64): 319.19,
    (1024, 1024, 512): 62.51,
}

TINY_TRANSFORMER = {
    "_class_name": "ZImageTransformer2DModel",
    "all_f_patch_size": [1],
    "all_patch_size": [2],
    "axes_dims": [8, 12, 12],
    "axes_lens": [256, 64, 64],
    "cap_feat_dim": 48,
    "dim": 64,
    "in_channels": 16,
    "n_heads": 2,
    "n_kv_heads": 2,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "norm_eps": 1e-05,
    "qk_norm": True,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
}
TINY_TEXT_ENCODER = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "head_dim": 16,
    "hidden_act": "silu",
    "hidden_size": 64,
    "intermediate_size": 96,
    "max_position_embeddings": 512,
    "model_type": "qwen3",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000,
    "tie_word_embeddings": True,
    "vocab_size": 300,
}
TINY_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [32, 32, 64, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 16,
    "layers_per_block": 1,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}


def _write_arch(root, transformer=TINY_TRANSFORMER, text_encoder=TINY_TEXT_ENCODER, vae=TINY_VAE):
    """A copy of the shipped config folder with the given component configs."""
    shutil.copytree(ARCH_DIR, root, dirs_exist_ok=True)
    for name, cfg in (("transformer", transformer), ("text_encoder", text_encoder), ("vae", vae)):
        (root / name / "config.json").write_text(json.dumps(cfg))
    return root


def _init_kwargs(cfg):
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


# --- full-size model, analytic (no torch) ----------------------------------------------------


def test_full_size_parameter_counts_are_exact():
    assert w.param_counts() == {
        "transformer": 6_154_908_736,
        "text_encoder": 4_022_468_096,
        "vae": 83_819_683,
    }


@pytest.mark.parametrize(("shape", "expected"), REFERENCE_TFLOPS.items())
def test_transformer_flops_match_flop_counter_reference(shape, expected):
    height, width, caption = shape
    got = w.transformer_tflops_per_forward(height, width, caption)
    assert got == pytest.approx(expected, rel=0.02)


def test_text_encoder_and_vae_flops():
    # Measured once with FlopCounterMode on the meta device (full-size models).
    assert w.text_encoder_tflops() == pytest.approx(3.8751, rel=0.001)
    assert w.vae_decode_tflops(1024, 1024) == pytest.approx(10.4722, rel=0.001)
    assert w.vae_decode_tflops(512, 512) == pytest.approx(2.5150, rel=0.001)


def test_weight_bytes_per_precision():
    params = w.param_counts()
    bf16 = w.weight_bytes("bf16")
    assert {k: bf16[k] for k in params} == {k: 2 * n for k, n in params.items()}
    assert bf16["total"] == 2 * sum(params.values())
    assert w.weight_bytes("fp16") == bf16
    fp32 = w.weight_bytes("fp32")
    assert fp32 == w.weight_bytes("fp32-tf32") == {k: 2 * b for k, b in bf16.items()}
    fp8, int8, int4 = (w.weight_bytes(p) for p in ("fp8", "int8", "int4"))
    assert fp8 == int8
    assert int8["vae"] == int4["vae"] == bf16["vae"]  # the VAE stays bf16
    for name in ("transformer", "text_encoder"):
        assert bf16[name] / 2 < int8[name] < bf16[name] * 0.6  # nearly all weights shrink
        assert int8[name] / 2 < int4[name] < int8[name]
    assert int8["transformer"] == pytest.approx(params["transformer"], rel=0.005)
    with pytest.raises(AdvisorError, match="precision"):
        w.weight_bytes("fp4")


def test_padding_and_sequence_lengths():
    assert w.image_tokens(1024, 1024) == 4096
    assert w.image_tokens(528, 528) == 33 * 33
    assert w.padded_caption_tokens(1) == 32
    assert w.padded_caption_tokens(64) == 64
    assert w.padded_caption_tokens(65) == 96
    # 33 x 33 = 1089 image tokens compute like 1120; 50 caption tokens like 64.
    assert w.transformer_tflops_per_forward(528, 528, 50) == pytest.approx(
        w.transformer_tflops_per_forward(528, 528, 64)
    )
    assert w.transformer_tflops_per_forward(528, 528, 64) == pytest.approx(14.0956, rel=0.001)


def test_transformer_forwards():
    assert w.transformer_forwards(9, cfg=False) == 9
    assert w.transformer_forwards(9, cfg=True) == 18
    with pytest.raises(AdvisorError, match="steps"):
        w.transformer_forwards(0, cfg=False)


def test_summary_totals():
    s = w.workload_summary(1024, 1024, batch=3, steps=9, caption_tokens=64, cfg=True)
    assert s["params"] == w.param_counts()
    assert (s["image_tokens"], s["caption_tokens"], s["sequence_length"]) == (4096, 64, 4160)
    assert s["transformer_forwards"] == 18 and s["text_encoder_passes"] == 2
    expected = (
        2 * s["text_encoder_tflops"]
        + 18 * s["transformer_tflops_per_forward"]
        + s["vae_decode_tflops"]
    )
    assert s["total_tflops_per_image"] == pytest.approx(expected)
    assert s["tflops_per_batch"]["total"] == pytest.approx(3 * expected)
    assert set(s["weight_gb"]) == set(w.PRECISIONS)
    assert s["weight_gb"]["bf16"]["total"] == pytest.approx(w.weight_bytes("bf16")["total"] / 1e9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"height": 1000}, "height"),
        ({"width": 0}, "width"),
        ({"width": -16}, "width"),
        ({"batch": 0}, "batch"),
        ({"steps": 0}, "steps"),
        ({"caption_tokens": 0}, "caption_tokens"),
        ({"caption_tokens": 513}, "caption_tokens"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    args = {"height": 1024, "width": 1024} | kwargs
    with pytest.raises(AdvisorError, match=field):
        w.workload_summary(**args)


def test_broken_architecture_names_file_and_field(tmp_path):
    wrong_type = _write_arch(tmp_path / "a", transformer=dict(TINY_TRANSFORMER, dim="wide"))
    with pytest.raises(AdvisorError, match=r"transformer/config.json: field 'dim': expected"):
        w.load_architecture(wrong_type)
    missing = _write_arch(tmp_path / "b", text_encoder={"hidden_size": 64})
    with pytest.raises(AdvisorError, match=r"text_encoder/config.json: missing field 'num_hidden"):
        w.load_architecture(missing)
    no_file = _write_arch(tmp_path / "c")
    (no_file / "vae" / "config.json").unlink()
    with pytest.raises(AdvisorError, match=r"vae/config.json: file not found"):
        w.load_architecture(no_file)


# --- CLI ------------------------------------------------------------------------------------


def test_cli_json(capsys):
    argv = ["workload", "--height", "1024", "--width", "1024", "--batch", "2", "--format", "json"]
    assert main(argv) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["params"]["transformer"] == 6_154_908_736
    assert s["image_tokens"] == 4096 and s["caption_tokens"] == 64
    assert s["transformer_tflops_per_forward"] == pytest.approx(55.61, rel=0.02)
    assert s["transformer_forwards"] == 9
    for key in ("text_encoder_tflops", "vae_decode_tflops", "total_tflops_per_image"):
        assert s[key] > 0
    assert s["tflops_per_batch"]["total"] == pytest.approx(2 * s["total_tflops_per_image"])
    assert s["weight_gb"]["bf16"]["transformer"] == pytest.approx(12.31, abs=0.01)


def test_cli_table(capsys):
    argv = ["workload", "--height", "512", "--width", "768", "--cfg", "--caption-tokens", "100"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "6,154,908,736" in out and "18 forwards" in out and "int4" in out


def test_cli_bad_input_exits_2(capsys):
    assert main(["workload", "--height", "1000", "--width", "1024"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: height: expected a positive multiple of 16")
    assert "Traceback" not in err


# --- tiny real models (torch) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    return w.load_architecture(_write_arch(tmp_path_factory.mktemp("tiny_arch")))


def _count_flops(fn):
    torch = pytest.importorskip("torch")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # The math backend runs attention as matmuls FlopCounterMode sees; the CPU fused kernel is
    # not in its registry and would count as zero.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return counter.get_total_flops() / 1e12


def test_tiny_transformer_matches_torch(tiny_arch):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = diffusers.ZImageTransformer2DModel(**_init_kwargs(TINY_TRANSFORMER)).eval()
    assert w.param_counts(tiny_arch)["transformer"] == sum(p.numel() for p in model.parameters())
    # 80 x 48 px -> 10 x 6 latent -> 15 image tokens (padded to 32); 5 caption tokens (to 32).
    latents = [torch.randn(16, 1, 10, 6)]
    caption = [torch.randn(5, TINY_TRANSFORMER["cap_feat_dim"])]
    measured = _count_flops(lambda: model(latents, torch.tensor([0.5]), caption, return_dict=False))
    analytic = w.transformer_tflops_per_forward(80, 48, 5, tiny_arch)
    assert analytic == pytest.approx(measured, rel=0.02)


def test_tiny_text_encoder_matches_torch(tiny_arch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.Qwen3Model(transformers.Qwen3Config(**TINY_TEXT_ENCODER)).eval()
    assert w.param_counts(tiny_arch)["text_encoder"] == sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, TINY_TEXT_ENCODER["vocab_size"], (1, 40))
    mask = torch.arange(40)[None] < 12  # padded prompt, as the pipeline sends it
    measured = _count_flops(
        lambda: model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    )
    assert w.text_encoder_tflops(40, tiny_arch) == pytest.approx(measured, rel=0.02)


def test_tiny_vae_matches_torch(tiny_arch):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    model = diffusers.AutoencoderKL(**_init_kwargs(TINY_VAE)).eval()
    assert w.param_counts(tiny_arch)["vae"] == sum(p.numel() for p in model.parameters())
    latent = torch.randn(1, 16, 4, 6)  # decodes to 32 x 48 px
    measured = _count_flops(lambda: model.decode(latent))
    assert w.vae_decode_tflops(32, 48, tiny_arch) == pytest.approx(measured, rel=0.02)


def test_workload_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, advisor.workload, advisor.commands.workload; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "False"
