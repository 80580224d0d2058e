"""Z-Image-Turbo capacity advisor: the dashboard. Run it with `advisor app`.

Thin on purpose: each page in app_pages/ holds widgets and plots only; the numbers come from
advisor/ (planner, fitted models, catalog, claim checker) through the advisor.app modules.
"""
import streamlit as st

st.set_page_config(page_title="Z-Image-Turbo capacity advisor", page_icon=":material/image:",
                   layout="wide", initial_sidebar_state=340)  # px: the Plan form's tables fit

PAGES = [
    st.Page("app_pages/plan.py", title="Plan", icon=":material/calculate:", default=True),
    st.Page("app_pages/explore.py", title="Explore", icon=":material/monitoring:"),
    st.Page("app_pages/gpus.py", title="GPUs", icon=":material/memory:"),
    st.Page("app_pages/claim.py", title="Check a claim", icon=":material/fact_check:"),
    st.Page("app_pages/your_data.py", title="Your data", icon=":material/upload_file:"),
    st.Page("app_pages/loadtests.py", title="Load tests", icon=":material/speed:"),
]

st.navigation(PAGES, position="top").run()
