import streamlit as st

from advisor.app.loadtests import (
    cdf_figure, memory_figure, memory_frame, parse_upload, shipped, soak_lines, steady_note,
    summary_frame,
)
from advisor.app.uploads import MAX_UPLOAD_MB
from advisor.errors import AdvisorError
from app_pages.common import MISSING, table, width_for

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
number, text = st.column_config.NumberColumn, st.column_config.TextColumn
st.subheader("The runs")
table("loadtests_table", frame, column_order=(
    "name", "gpu", "mode", "rate_per_s", "duration_min", "requests", "utilization_pct",
    "memory_slope_mb_per_h", "source"), column_config={
    "name": text("run", width=width_for(frame.name)),
    "gpu": text("GPU", width=width_for(frame.gpu)), "mode": "mode",
    "rate_per_s": number("rate (requests/s)", format="%.2f"),
    "duration_min": number("duration (min)", format="%.1f"),
    "requests": number("requests"),
    "utilization_pct": number("GPU busy (measured)", format="%.0f%%",
                              help="batch service time over wall time, percent"),
    "memory_slope_mb_per_h": number("memory slope (MB/h)", format="%.1f",
                                    help="a soak's memory growth after warm-up"),
    "source": text("file", width=width_for(frame.source))})
st.subheader("Latency: measured and predicted")
table("loadtests_latency", frame, column_order=(
    "name", "p95_s", "p95_ci", "p99_s", "predicted_p95_s", "predicted_p99_s", "p95_error_pct",
    "policy_p95_error_pct", "steady_p95_s", "steady_utilization_pct"), column_config={
    "name": text("run", width=width_for(frame.name)),
    "p95_s": number("p95 (s)", format="%.2f", help="measured"),
    "p95_ci": text("p95 90% CI (s)", help="circular block bootstrap of the measured p95"),
    "p99_s": number("p99 (s)", format="%.2f", help="measured"),
    "predicted_p95_s": number("p95 replayed (s)", format="%.2f",
                              help="the same arrivals replayed with the fitted service times"),
    "predicted_p99_s": number("p99 replayed (s)", format="%.2f"),
    "p95_error_pct": number("p95 error %", format="%+.1f"),
    "policy_p95_error_pct": number(
        "error, own times %", format="%+.1f",
        help="the same arrivals replayed with the run's own service times: the batching "
             "policy alone, without the service-time model's error"),
    "steady_p95_s": number("p95 long run (s)", format="%.2f",
                           help="the planner's long-run simulation at the same rate"),
    "steady_utilization_pct": number("GPU busy, long run", format="%.0f%%"),
})
st.caption(f"{MISSING}: not measured in that run (an HTTP endpoint has no GPU busy time; only "
           "a soak measures a memory slope).")
notes = [f"- **{name}**: {note}" for name, note in zip(frame.name, frame.run_length) if note]
if notes:
    st.markdown("**Long enough to judge the long-run p95?**\n" + "\n".join(notes))

names = [f"{d.get('name')} ({d.get('_source')})" for d in docs]
choice = st.selectbox("Load test", range(len(docs)), format_func=names.__getitem__,
                      key="loadtests_choice")
doc = docs[choice]
left, right = st.columns(2)
left.plotly_chart(cdf_figure(doc), key="loadtests_cdf")
left.caption(steady_note(doc))
if len(memory_frame(doc)):
    right.plotly_chart(memory_figure(doc), key="loadtests_memory")
else:
    right.info("No memory samples in this run (an HTTP endpoint, or a dry run).")
for line in soak_lines(doc):
    st.markdown(f"- soak: {line}")
