import streamlit as st

from advisor.app_data import catalog_frame
from app_pages.common import catalog

st.title("GPUs")
st.caption("The GPU catalog (spec figures, each with its datasheet source in gpu_catalog.yaml). "
           "Click a column header to sort.")

frame = catalog_frame(catalog())
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
text = c1.text_input("Search name or id", key="gpus_search")
vendors = c2.multiselect("Vendor", sorted(frame.vendor.unique()), key="gpus_vendor")
segments = c3.multiselect("Segment", sorted(frame.segment.unique()), key="gpus_segment")
min_mem = c4.number_input("Min memory (GB)", 0, 2048, 0, step=8, key="gpus_min_mem")

shown = frame[frame.memory_gb >= min_mem]
if text:
    shown = shown[shown.name.str.contains(text, case=False) | shown.id.str.contains(text, case=False)]
if vendors:
    shown = shown[shown.vendor.isin(vendors)]
if segments:
    shown = shown[shown.segment.isin(segments)]

st.dataframe(shown, hide_index=True)
