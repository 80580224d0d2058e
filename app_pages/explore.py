import streamlit as st

from advisor.app import LOSSY_NOTE, precision_label
from advisor.app.charts import curve_figure, residuals_figure, utilization_figure
from advisor.app.explore import (
    BATCHES, SQUARE_SIDES, TARGETS, curve_queries, machine_frame, measured_along, measured_setting,
    model_row, predicted_frame, quantized_along, validation_frames,
)
from advisor.app.measurements import problems_markdown
from advisor.contract import (
    ATTENTIONS, COMPILE_MODES, OFFLOADS, PRECISIONS, QUANT_SCOPES, QUANTIZATIONS, Setting,
    setting_problem,
)
from advisor.errors import AdvisorError
from app_pages.common import (
    catalog, data_banner, measurements_frame, models, provenance_note, table, validation,
    width_for,
)

VAE_CHOICES = {(False, False): "plain", (True, False): "compiled",
               (False, True): "channels-last", (True, True): "compiled, channels-last"}
SCOPE_LABELS = {"transformer+text_encoder": "transformer and text encoder",
                "transformer": "transformer only"}

st.title("Explore the measurements and the models")
data_banner()
provenance_note()

m = models()
frame = measurements_frame()
probed = sorted(m.probed)
gpu_ids = probed + sorted(set(m.specs) - set(probed))

c1, c2, c3, c4, c5 = st.columns([3, 2, 2, 2, 2])
gpu = c1.selectbox("GPU", gpu_ids, key="explore_gpu",
                   format_func=lambda g: f"{g} ({'measured' if g in m.probed else 'transferred'})")
precision = c2.selectbox("Precision", PRECISIONS, key="explore_precision",
                         format_func=precision_label, help=LOSSY_NOTE)
attention = c3.selectbox("Attention", ATTENTIONS, key="explore_attention")
compiled = c4.toggle("torch.compile", key="explore_compile")
offload = c5.selectbox("CPU offload", OFFLOADS, key="explore_offload")
d1, d2, d3 = st.columns([3, 3, 5])
vae_compile, vae_channels_last = d3.selectbox(
    "VAE decode", list(VAE_CHOICES), key="explore_vae", format_func=VAE_CHOICES.get,
    help="torch.compile of the VAE decoder, and its channels-last memory format")
scope = d1.selectbox("Quantized parts", QUANT_SCOPES, key="explore_scope",
                     format_func=SCOPE_LABELS.get, disabled=precision not in QUANTIZATIONS,
                     help="What a quantized precision quantizes (the rest stays in bf16)")
mode = d2.selectbox("Compile mode", COMPILE_MODES, key="explore_compile_mode",
                    disabled=not (compiled or vae_compile),
                    help="torch.compile's mode for what is compiled")
setting = Setting(  # a widget that does not apply keeps its value for later, unused
    precision=precision, attention=attention, compile=compiled, offload=offload,
    quant_scope=scope if precision in QUANTIZATIONS else QUANT_SCOPES[0],
    compile_mode=mode if compiled or vae_compile else "default",
    vae_compile=vae_compile, vae_channels_last=vae_channels_last)
if problem := setting_problem(setting):
    st.warning(f"Not a setting that runs: {problem}", icon=":material/block:")
    st.stop()
a1, a2 = st.columns([2, 3])
axis = a1.radio("Along", ["resolution", "batch"], horizontal=True, key="explore_axis",
                format_func=lambda a: "image size (square)" if a == "resolution" else "batch size")
if axis == "resolution":
    batch = a2.select_slider("Batch", BATCHES, value=1, key="explore_batch")
    height = width = 1024
else:
    batch = 1
    height = width = a2.select_slider("Resolution (square)", SQUARE_SIDES, value=1024,
                                      key="explore_side")

points = measured_along(frame, axis, gpu, setting, height, width, batch)
ok, oom = points[points.status == "ok"], points[points.status == "oom"]
quantized = quantized_along(frame, axis, gpu, setting, height, width, batch)
quantized = quantized[quantized.status == "ok"]
if setting.precision in QUANTIZATIONS or len(quantized):
    st.warning(LOSSY_NOTE, icon=":material/warning:")
try:  # a precision the GPU cannot run (fp8 below compute capability 8.9), or with offload
    predicted = predicted_frame(m, curve_queries(axis, gpu, setting, height, width, batch))
except AdvisorError as exc:
    st.warning(f"Not predicted: {exc}", icon=":material/block:")
    st.stop()
x = "megapixels" if axis == "resolution" else "batch"

left, right = st.columns(2)
left.plotly_chart(curve_figure(predicted, ok, x, "latency_s", "latency_lo_s", "latency_hi_s",
                               "Latency of one batch (s)", "latency (s)", quantized=quantized),
                  key="explore_latency")
right.plotly_chart(curve_figure(predicted, ok, x, "peak_memory_gb", "memory_lo_gb", "memory_hi_gb",
                                "Peak GPU memory (GB, as nvidia-smi shows)", "peak memory (GB)",
                                limit=predicted.capacity_gb.iat[0], ooms=oom,
                                quantized=quantized,
                                limit_label=catalog().get(gpu).capacity_note),
                   key="explore_memory")
basis = model_row(predicted)
st.caption(f"Line: {basis.source} — {basis.source_detail}. Shaded: 90% interval "
           f"({basis.interval_basis}). Open circles: {len(ok)} measured record(s); "
           f"✕: {len(oom)} out-of-memory record(s); diamonds: {len(quantized)} measured "
           "record(s) at a quantized precision, same GPU and other settings. Points on the line "
           "that match a probed config show the measured figure.")

number = st.column_config.NumberColumn
with st.expander("The numbers behind the curves"):
    table("explore_numbers", predicted, column_order=(
        "resolution", "batch", "latency_s", "latency_lo_s", "latency_hi_s", "img_per_s",
        "peak_memory_gb", "memory_lo_gb", "memory_hi_gb", "memory_needed_gb", "capacity_gb",
        "fits", "source"), column_config={
        "resolution": "image size", "batch": number("batch"),
        "latency_s": number("latency (s)", format="%.2f"),
        "latency_lo_s": number("90% low (s)", format="%.2f"),
        "latency_hi_s": number("90% high (s)", format="%.2f"),
        "img_per_s": number("images/s", format="%.2f"),
        "peak_memory_gb": number("peak memory (GB)", format="%.1f"),
        "memory_lo_gb": number("90% low (GB)", format="%.1f"),
        "memory_hi_gb": number("90% high (GB)", format="%.1f"),
        "memory_needed_gb": number("needed (GB)", format="%.1f"),
        "capacity_gb": number("card (GB)", format="%.1f"),
        "fits": st.column_config.CheckboxColumn("fits"),
        "source": "source"})

st.subheader("Achieved TFLOP/s and MFU beside NVML utilization")
st.caption("nvidia-smi's 'GPU utilization' counts time a kernel runs, not how much of the "
           "tensor cores it uses: it reads ~100% while MFU is far lower. Measured records only.")
util = measured_setting(frame, gpu, setting)
util = util[util.status == "ok"].dropna(subset=["mfu_pct"])
if util.empty:
    st.info(f"No measured records with achieved TFLOP/s on {gpu} with this setting: only "
            "probed GPUs and settings have them.")
else:
    st.plotly_chart(utilization_figure(util), key="explore_util")
    table("explore_util_table", util, column_order=(
        "config", "achieved_tflops", "mfu_pct", "gpu_util_pct", "power_w", "source"),
        column_config={
            "config": st.column_config.TextColumn("config", width=width_for(util.config)),
            "achieved_tflops": number("achieved TFLOP/s", format="%.0f"),
            "mfu_pct": number("MFU %", format="%.1f"),
            "gpu_util_pct": number("NVML GPU utilization %", format="%.0f"),
            "power_w": number("power (W)", format="%.0f"),
            "source": st.column_config.TextColumn("record (file:line)",
                                                  width=width_for(util.source))})
if m.kept:  # valid records of a setting the advisor does not offer: listed, not warned about
    with st.expander(f"{len(m.kept)} measured record(s) kept for the record, not fitted"):
        st.markdown(problems_markdown(m.kept))

st.subheader("How good are the models? Held-out validation")
report = validation()
metrics, residuals = validation_frames(report)
table("explore_validation", metrics, column_config={
    "split": st.column_config.TextColumn("validation split", width=width_for(metrics.split)),
    "target": st.column_config.TextColumn("what is predicted", width=width_for(metrics.target)),
    "mape": number("mean abs. error %", format="%.1f"),
    "median_ape": number("median abs. error %", format="%.1f"),
    "max_ape": number("max abs. error %", format="%.1f"),
    "coverage": number("90% interval coverage %", format="%.0f"),
    "n": number("held-out points"),
})
st.caption(f"Rows \"{TARGETS['total_s']}, compute-bound\" and \"…, host-bound\" split the "
           "latency by regime: at 512x512 batch 1 and below the host issuing kernels sets the "
           "pace, and intervals are calibrated for each regime apart."
           + (f" The shipped report: {report['shipped']}." if report.get("shipped") else ""))
spread = machine_frame(report)
if not spread.empty:
    st.markdown("**Two machines of one GPU.** The same config measured on several machines "
                "(GPU UUIDs): slowest over fastest median total.")
    table("explore_machines", spread, column_config={
        "gpu": "GPU", "config": st.column_config.TextColumn("config",
                                                            width=width_for(spread.config)),
        "machines": number("machines"), "spread_pct": number("spread %", format="%.1f")})
target = st.radio("Residuals of", sorted(residuals.target.unique()), horizontal=True,
                  key="explore_target", format_func=lambda t: TARGETS.get(t, t))
st.plotly_chart(residuals_figure(residuals, target), key="explore_residuals")
