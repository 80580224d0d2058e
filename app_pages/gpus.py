import streamlit as st

from advisor.app import LOSSY_NOTE, precision_label
from advisor.app.explore import SQUARE_SIDES
from advisor.app.gpus import catalog_predictions, fit_limits
from advisor.contract import PRECISIONS, QUANTIZATIONS
from advisor.errors import AdvisorError
from app_pages.common import (
    MISSING, catalog, data_banner, models, provenance_note, table, width_for,
)

st.title("GPUs")
st.caption("The GPU catalog: what the models predict for one config on each card, and the "
           "cards' datasheet figures. Click a column header to sort.")
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

number, text = st.column_config.NumberColumn, st.column_config.TextColumn
ROW_HEIGHT = 72  # px: three lines, so the names and reasons wrap instead of being cut
name = text("GPU", width=200)


def height(rows: int) -> int:
    return min(38 + ROW_HEIGHT * rows, 800)


st.subheader(f"Predicted at {side}x{side}, batch {batch}, {precision}")
table("gpus_table", shown, height=height(len(shown)), row_height=ROW_HEIGHT, column_order=(
    "name", "precision", "fits", "img_per_s", "latency_s", "memory_needed_gb", "source",
    "note"), column_config={
        "name": name, "precision": text("predicted at", width=90),
        "fits": st.column_config.CheckboxColumn("fits"),
        "img_per_s": number("images/s", format="%.2f"),
        "latency_s": number("batch latency (s)", format="%.2f"),
        "memory_needed_gb": number("memory needed (GB)", format="%.1f"),
        "source": text("source", width=width_for(shown.source.dropna(), "source")),
        "note": text("why it fits or not", width=290)})
st.caption(f"{MISSING} images/s and latency: the config does not fit the card (why: the last "
           "column) or the card cannot run the precision; no speed is shown for a config that "
           "would not run.")
other = shown[shown.precision.notna() & (shown.precision != precision)]
if len(other):
    st.caption(f"Predicted at {', '.join(sorted(set(other.precision)))}, the precision they run "
               f"(the catalog lists no dense {precision} rate for them): "
               f"{', '.join(other.name)}.")

st.subheader("Specifications")
st.caption("From each entry's datasheet sources (`gpu_catalog.yaml`). "
           f"{MISSING}: the catalog has no such figure (no fp8 units, no public price, no "
           "on-demand cloud offer found).")
table("gpus_specs", shown, height=height(len(shown)), row_height=ROW_HEIGHT, column_order=(
    "name", "memory_gb", "bandwidth_gbps", "bf16_tflops", "fp8_tflops", "tdp_w", "buy_usd",
    "cloud_usd_per_hour", "segment", "architecture"), column_config={
    "name": text("GPU", width=160), "memory_gb": number("memory (GB)"),
    "bandwidth_gbps": number("bandwidth (GB/s)"), "bf16_tflops": number("bf16 TFLOPS"),
    "fp8_tflops": number("fp8 TFLOPS"), "tdp_w": number("TDP (W)"),
    "buy_usd": text("buy (USD)", width=width_for(shown.buy_usd.dropna(), "buy (USD)")),
    "cloud_usd_per_hour": number("cloud USD/h", format="$%.2f", help="per GPU-hour"),
    "segment": text("segment", width=width_for(shown.segment, "segment")),
    "architecture": text("architecture", width=width_for(shown.architecture, "architecture"))})

st.subheader("What fits each card")
st.caption(f"At {precision}, per CPU-offload setting: the largest batch of 1024x1024 images and "
           "the largest square image at batch 1 that fit the card's memory, by the one rule "
           "behind every fits verdict (the smallest allocator cap the run needs + the larger of "
           "1 GB and the CUDA context). Source: a run measured on that GPU, a minimum cap "
           "measured under an emulated card size (capped-measured: `advisor probe --min-cap` on "
           "an H200; the cap a run needs is the same on every GPU of a software stack), or the "
           "fitted model. Sizes beyond the searched ones (batch 64, 4096 px) are not tried.")
limits = limits[limits.gpu.isin(shown.id)]
table("gpus_limits", limits, height=height(len(limits)), row_height=ROW_HEIGHT,
      column_order=("name", "precision", "offload", "batch_1024", "batch_1024_source", "side_b1",
                    "side_b1_source", "capacity_gb"),
      column_config={"name": name, "offload": "CPU offload",
                     "batch_1024": number("largest batch", format="%d",
                                          help="of 1024x1024 images"),
                     "batch_1024_source": text("source (batch)", width=200),
                     "side_b1": number("largest side (px)", format="%d",
                                       help="of a square image at batch 1"),
                     "side_b1_source": text("source (side)", width=200),
                     "capacity_gb": number("card memory (GB)", format="%.1f")})
provenance_note()
