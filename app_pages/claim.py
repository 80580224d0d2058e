import streamlit as st

from advisor import MEASUREMENTS_DIR
from advisor.app.claim import claim_sources, claim_tables
from advisor.app import LOSSY_NOTE, precision_label
from advisor.claims import CLAIM_PRECISIONS, UNMODELLED, check_claim, measured_mfu_ceiling
from advisor.errors import AdvisorError
from app_pages.common import catalog, data_banner, models_or_reason, table, width_for

VERDICT_BOX = {"impossible": st.error, "implausible": st.warning, "plausible": st.success}


@st.cache_resource(show_spinner=False)
def mfu_ceiling():
    return measured_mfu_ceiling(MEASUREMENTS_DIR)


st.title("Check a claim")
st.markdown("A blog says *“GPU X makes Y images/s with Z-Image-Turbo”*. Is that physically "
            "possible? The check multiplies the model's FLOPs per image by the claimed speed and "
            "holds it to the card's dense peak, checks that the weights fit (or could be moved "
            "over the host link in time), and compares with the fitted prediction.")
data_banner()

cat = catalog()
c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
gpu_id = c1.selectbox("GPU", cat.ids(), index=cat.ids().index("a100-pcie-40gb"),
                      key="claim_gpu", format_func=lambda g: f"{cat.get(g).name} ({g})")
height = c2.number_input("Height (px)", 16, 4096, 1024, step=16, key="claim_height")
width = c3.number_input("Width (px)", 16, 4096, 1024, step=16, key="claim_width")
steps = c4.number_input("Steps", 1, 100, 8, key="claim_steps")
c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
unit = c1.radio("Claimed speed as", ["images per second", "seconds per image"],
                horizontal=True, key="claim_unit")
speed = c2.number_input(unit, min_value=0.001, value=3.27, format="%g", key="claim_speed")
batch = c3.number_input("Batch", 1, 256, 8, key="claim_batch")
vram = c4.number_input("Claimed GPU memory (GB, 0: not stated)", 0.0, 2048.0, 0.0,
                       key="claim_vram")
c1, c2, c3 = st.columns([2, 1, 1])
precision = c1.selectbox(
    "Precision", ["not stated", *CLAIM_PRECISIONS], key="claim_precision",
    format_func=lambda p: f"{p} (not modelled)" if p in UNMODELLED else precision_label(p),
    help=f"{LOSSY_NOTE}. Not modelled: " + "; ".join(
        f"{p}: {q.scheme}" for p, q in UNMODELLED.items()))
cfg = c2.toggle("Classifier-free guidance", key="claim_cfg")
caption = c3.number_input("Caption tokens", 1, 512, 64, key="claim_caption")

per_second = unit == "images per second"
m, no_models = models_or_reason()  # the check runs without models, and says so
try:
    result = check_claim(
        cat.get(gpu_id), height, width, steps=steps, batch=batch,
        images_per_second=speed if per_second else None,
        seconds_per_image=None if per_second else speed, vram_gb=vram or None,
        precision=None if precision == "not stated" else precision, cfg=cfg,
        caption_tokens=caption, models=m, models_note=no_models,
        mfu_ceiling=mfu_ceiling())
except AdvisorError as exc:
    st.error(f"Cannot check this claim: {exc}", icon=":material/error:")
    st.stop()

VERDICT_BOX[result["verdict"]](f"**{result['verdict'].upper()}**", icon=":material/gavel:")
st.markdown("\n".join(f"- {r}" for r in result["reasons"]))

compute, memory = claim_tables(result)
st.subheader("The arithmetic: compute")
table("claim_compute", compute, column_config={
    "value": st.column_config.NumberColumn(format="%.3g"),
    "from": st.column_config.TextColumn(width=width_for(compute["from"], "from"))})
st.markdown(claim_sources(result))
st.subheader("The arithmetic: where the weights can live")
st.caption("Each precision and offload mode: the weights that must stay on the GPU, and the "
           "seconds the host link needs to move the rest for each batch. A mode explains the "
           "claim only if it fits the memory budget and its transfers fit in the claimed batch "
           "time. Modes that do: " + (", ".join(result["arithmetic"]["memory_explanations"])
                                      or "none"))
table("claim_memory", memory, column_config={
    column: st.column_config.NumberColumn(label, format="%.2f") for column, label in (
        ("resident_gb", "on the GPU (GB)"), ("memory_budget_gb", "memory budget (GB)"),
        ("transfer_s_per_batch", "host-link s per batch"),
        ("claimed_s_per_batch", "claimed s per batch"))})
if result["prediction"]:
    p = result["prediction"]
    lo, hi = p["seconds_per_image"]
    st.subheader("What the models predict")
    st.markdown(f"{lo:.2f}–{hi:.2f} s per image (batch {batch}, any attention and compile "
                f"setting, with the weights and offload that fit the memory: "
                f"{', '.join(p['settings'])}), **{p['fastest']['source']}**: "
                f"{p['fastest']['source_detail']}.")
