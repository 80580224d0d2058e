"""Cached loaders shared by the pages: read once per server process, reused by every session."""
import streamlit as st

from advisor.catalog import load_catalog


@st.cache_resource(show_spinner="Reading the GPU catalog…")
def catalog():
    return load_catalog()


def provenance_note() -> None:
    st.caption(
        "**measured**: a probe record of a real pipeline run · **fitted**: the latency/memory "
        "model on that GPU's own records · **transferred**: fitted on other GPUs and carried "
        "over by their specs (least sure) · **spec**: the catalog entry's datasheet figure"
    )
