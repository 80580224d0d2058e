import streamlit as st

from advisor.app.loadtests import (
    cdf_figure, memory_figure, memory_frame, parse_upload, shipped, summary_frame,
)
from advisor.app.uploads import MAX_UPLOAD_MB
from advisor.errors import AdvisorError
from app_pages.common import table

st.title("Load tests")
st.caption("`advisor loadtest` runs: Poisson traffic through one dispatcher with the plan's "
           "batching, measured per request, beside the planner's predictions: the same arrivals "
           "replayed with the fitted service times, and the long-run simulation at the same "
           "rate (data/loadtests/README.md). Upload your own results file to compare.")


@st.cache_data
def _shipped():
    return shipped()


docs, problems = _shipped()
docs = list(docs)
for problem in problems:
    st.warning(problem, icon=":material/warning:")
files = st.file_uploader("Load-test results (.json)", type=["json"], accept_multiple_files=True,
                         max_upload_size=MAX_UPLOAD_MB, key="loadtests_files")
for file in files or []:
    try:
        docs.append(parse_upload(file.name, file.getvalue()))
    except AdvisorError as exc:
        st.error(str(exc), icon=":material/error:")

if not docs:
    st.info("No load tests shipped yet, and none uploaded.")
    st.stop()

frame = summary_frame(docs)
number = st.column_config.NumberColumn
table("loadtests_table", frame, column_config={
    "rate_per_s": number("rate /s", format="%.2f"),
    "utilization": number("GPU busy (measured)", format="%.2f"),
    "p95_s": number("p95 s (measured)", format="%.2f"),
    "p95_ci_low_s": number("p95 CI low", format="%.2f"),
    "p95_ci_high_s": number("p95 CI high", format="%.2f"),
    "p99_s": number("p99 s (measured)", format="%.2f"),
    "predicted_p95_s": number("p95 s (same arrivals)", format="%.2f"),
    "predicted_p99_s": number("p99 s (same arrivals)", format="%.2f"),
    "p95_error_pct": number("p95 error %", format="%+.1f"),
    "policy_p95_error_pct": number(
        "p95 error %, run's service times", format="%+.1f",
        help="the same arrivals replayed with the run's own service times: the batching "
             "policy alone, without the service-time model's error"),
    "steady_p95_s": number("p95 s (steady state)", format="%.2f"),
    "steady_utilization": number("utilization (steady)", format="%.2f"),
    "memory_slope_mb_per_h": number("memory MB/h", format="%.1f"),
})

names = [f"{d.get('name')} ({d.get('_source')})" for d in docs]
choice = st.selectbox("Load test", range(len(docs)), format_func=names.__getitem__,
                      key="loadtests_choice")
doc = docs[choice]
left, right = st.columns(2)
left.plotly_chart(cdf_figure(doc), key="loadtests_cdf")
if len(memory_frame(doc)):
    right.plotly_chart(memory_figure(doc), key="loadtests_memory")
else:
    right.info("No memory samples in this run (an HTTP endpoint, or a dry run).")
for line in (doc.get("soak") or {}).get("verdict", []):
    st.markdown(f"- soak: {line}")
