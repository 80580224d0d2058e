"""The probe's op-class profile: kernel classification and per-stage arithmetic (CPU)."""
from __future__ import annotations

import pytest

from probes.profile import OP_CLASSES, op_class, summarize


@pytest.mark.parametrize("kernel, expected", [
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_cublas", "gemm"),
    ("nvjet_hsh_128x256_64x4_1x2_h_bz_coopA_NTN", "gemm"),
    ("triton_tem_fused_mm_0", "gemm"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128>>", "attention"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x128", "attention"),
    ("sm80_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128", "convolution"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add>", "elementwise"),
    ("triton_poi_fused_add_mul_rsqrt_0", "elementwise"),
    ("void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<float>", "elementwise"),
    ("Memcpy HtoD (Pageable -> Device)", "other"),
    ("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication"),
])
def test_kernels_are_classified_by_name(kernel, expected):
    assert op_class(kernel) == expected


def test_summarize_splits_time_by_stage_and_class_per_window():
    windows = {"text_encode": [(0, 100)], "denoise_step": [(200, 300), (300, 400)],
               "vae_decode": []}
    kernels = [
        ("gemm_a", 10, 60), ("flash_fwd", 50, 90),            # text encode: overlap 50-60
        ("nvjet_x", 200, 250), ("vectorized_elementwise", 260, 270),   # step 1
        ("nvjet_x", 300, 380), ("vectorized_elementwise", 380, 420),   # step 2: clipped at 400
        ("stray", 500, 510),                                  # outside every window: dropped
    ]
    out = summarize(windows, kernels)
    assert set(out) == {"text_encode", "denoise_step"}  # a stage with no window is left out
    te = out["text_encode"]
    assert te["wall_s"] == pytest.approx(100e-6)
    assert te["busy_s"] == pytest.approx(80e-6)  # 10-90, the overlap counted once
    assert te["class_s"]["gemm"] == pytest.approx(50e-6)
    assert te["class_s"]["attention"] == pytest.approx(40e-6)
    assert te["kernels"] == 2
    step = out["denoise_step"]  # the mean of the two windows
    assert step["wall_s"] == pytest.approx(100e-6)
    assert step["class_s"]["gemm"] == pytest.approx((50 + 80) / 2 * 1e-6)
    assert step["class_s"]["elementwise"] == pytest.approx((10 + 20) / 2 * 1e-6)
    assert step["busy_s"] == pytest.approx((60 + 100) / 2 * 1e-6)
    assert set(step["class_s"]) == set(OP_CLASSES)


def test_ranges_mirrored_on_the_gpu_timeline_are_not_kernels():
    from types import SimpleNamespace as NS

    from probes.profile import is_kernel

    cuda, cpu = "cuda", "cpu"
    assert is_kernel(NS(device_type=cuda, name="nvjet_x", is_user_annotation=False), cuda)
    assert not is_kernel(NS(device_type=cuda, name="stage/denoise_step",
                            is_user_annotation=False), cuda)
    assert not is_kernel(NS(device_type=cuda, name="Torch-Compiled Region",
                            is_user_annotation=True), cuda)
    assert not is_kernel(NS(device_type=cpu, name="aten::mm", is_user_annotation=False), cuda)
