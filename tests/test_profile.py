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
    ("void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16, __nv_bfloat16, float>",
     "elementwise"),  # cuDNN's layout transform around a convolution: a copy
    ("void at::native::(anonymous namespace)::ComputeFusedParamsCUDAKernel<c10::BFloat16>",
     "elementwise"),
    ("Memset (Device)", "elementwise"),
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


def test_a_stage_window_is_its_host_range_not_the_gpu_copy_of_it():
    """The profiler mirrors each stage's range on the GPU timeline; counted as a second window,
    it halved a single-call stage's kernel seconds and launches (a run of 2026-12-02)."""
    from types import SimpleNamespace as NS

    from probes.profile import split_events

    cuda, cpu = "cuda", "cpu"

    def event(name, device, start, end, annotation=False):
        return NS(name=name, device_type=device, is_user_annotation=annotation,
                  time_range=NS(start=start, end=end))

    events = [event("stage/vae_decode", cpu, 0, 100),
              event("stage/vae_decode", cuda, 5, 95, annotation=True),
              event("conv_fprop", cuda, 10, 40), event("vectorized_silu", cuda, 50, 90)]
    for step, start in enumerate((200, 300, 400)):
        events += [event("stage/denoise_step", cpu, start, start + 80),
                   event("stage/denoise_step", cuda, start + 2, start + 78, annotation=True),
                   event("nvjet_gemm", cuda, start + 10, start + 30 + step)]
    windows, kernels = split_events(events, cuda)
    assert windows["vae_decode"] == [(0, 100)]
    assert windows["denoise_step"] == [(300, 380), (400, 480)]  # steps after the first
    out = summarize(windows, kernels)
    assert out["vae_decode"]["kernels"] == 2
    assert out["vae_decode"]["class_s"]["convolution"] == pytest.approx(30e-6)
    assert out["denoise_step"]["kernels"] == 1
    assert out["denoise_step"]["class_s"]["gemm"] == pytest.approx((21 + 22) / 2 * 1e-6)
