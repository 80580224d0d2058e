import streamlit as st

from advisor.app import LOSSY_NOTE, precision_label
from advisor.app.explore import SQUARE_SIDES
from advisor.app.gpus import catalog_predictions, fit_limits
from advisor.contract import PRECISIONS, QUANTIZATIONS
from advisor.errors import AdvisorError
from app_pages.common import catalog, data_banner, models, provenance_note, table

st.title("GPUs")
st.caption("The GPU catalog: spec figures from each entry's datasheet sources (gpu_catalog.yaml), "
           "and what the models predict for one config on each. Click a column header to sort.")
data_banner()

p1, p2, p3 = st.columns(3)
side = p1.select_slider("Resolution (square)", SQUARE_SIDES, value=1024, key="gpus_side")
batch = p2.number_input("Batch", 1, 64, 1, key="gpus_batch")
precision = p3.selectbox("Precision", PRECISIONS, key="gpus_precision",
                         format_func=precision_label, help=LOSSY_NOTE)
if precision in QUANTIZATIONS:
    st.caption(f"⚠ {LOSSY_NOTE}")
try:  # models without figures for a (quantized) precision say so
    frame = catalog_predictions(models(), catalog(), side, side, batch, precision)
    limits = fit_limits(models(), catalog(), precision)
except AdvisorError as exc:
    st.warning(f"Not predicted: {exc}", icon=":material/block:")
    st.stop()

c1, c2, c3, c4, c5 = st.columns([2, 2, 2, 1, 1])
text = c1.text_input("Search name or id", key="gpus_search")
vendors = c2.multiselect("Vendor", sorted(frame.vendor.unique()), key="gpus_vendor")
segments = c3.multiselect("Segment", sorted(frame.segment.unique()), key="gpus_segment")
min_mem = c4.number_input("Min memory (GB)", 0, 2048, 0, step=8, key="gpus_min_mem")
fits_only = c5.toggle("Fits only", key="gpus_fits_only")

shown = frame[frame.memory_gb >= min_mem]
if text:
    shown = shown[shown.name.str.contains(text, case=False)
                  | shown.id.str.contains(text, case=False)]
if vendors:
    shown = shown[shown.vendor.isin(vendors)]
if segments:
    shown = shown[shown.segment.isin(segments)]
if fits_only:
    shown = shown[shown.fits.fillna(False).astype(bool)]

ORDER = ("name", "precision", "fits", "img_per_s", "latency_s", "memory_needed_gb", "source",
         "note", "memory_gb", "bandwidth_gbps", "bf16_tflops", "fp8_tflops", "price_usd_low",
         "price_usd_high", "price_kind", "cloud_usd_per_hour", "tdp_w", "segment", "architecture",
         "vendor", "runnable", "id")
number = st.column_config.NumberColumn
COLUMNS = {
    "memory_gb": number("memory GB (spec)"), "bandwidth_gbps": number("bandwidth GB/s (spec)"),
    "bf16_tflops": number("bf16 TFLOPS (spec)"), "fp8_tflops": number("fp8 TFLOPS (spec)"),
    "tdp_w": number("TDP W (spec)"),
    "price_usd_low": number("buy USD, low (spec)", format="$%d"),
    "price_usd_high": number("buy USD, high (spec)", format="$%d"),
    "price_kind": "price kind (list or street)",
    "cloud_usd_per_hour": number("cloud $/GPU-h (spec)", format="$%.2f"),
    "fits": st.column_config.CheckboxColumn("fits in memory"),
    "img_per_s": number("images/s (predicted)", format="%.2f"),
    "latency_s": number("batch latency s (predicted)", format="%.2f"),
    "memory_needed_gb": number("memory needed GB (predicted)", format="%.1f"),
    "source": "prediction source",
    "precision": "predicted at",
    "note": st.column_config.TextColumn("why (fits or not)", width="medium"),
}
table("gpus_table", shown, height=min(38 + 35 * len(shown), 800), column_order=ORDER,
      column_config=COLUMNS)

st.subheader("What fits each card")
st.caption(f"At {precision}, per CPU-offload setting: the largest batch of 1024x1024 images and "
           "the largest square image at batch 1 that fit the card's memory, by the one rule "
           "behind every fits verdict (the smallest allocator cap the run needs + the larger of "
           "1 GB and the CUDA context). Source: a run measured on that GPU, a minimum cap "
           "measured under an emulated card size (capped-measured: `advisor probe --min-cap` on "
           "an H200; the cap a run needs is the same on every GPU of a software stack), or the "
           "fitted model. Sizes beyond the searched ones (batch 64, 4096 px) are not tried.")
limits = limits[limits.gpu.isin(shown.id)]
table("gpus_limits", limits, height=min(38 + 35 * len(limits), 600),
      column_order=("name", "precision", "offload", "batch_1024", "batch_1024_source", "side_b1",
                    "side_b1_source", "capacity_gb"),
      column_config={"batch_1024": number("largest batch at 1024x1024", format="%d"),
                     "batch_1024_source": "source (batch)",
                     "side_b1": number("largest square side at batch 1 (px)", format="%d"),
                     "side_b1_source": "source (size)",
                     "capacity_gb": number("memory GB (the card's)", format="%.1f")})
provenance_note()
