import streamlit as st

from advisor.app.charts import parity_figure
from advisor.app.measurements import problems_markdown
from advisor.app.uploads import MAX_UPLOAD_MB, parse_records_upload, upload_text, valid_lines
from advisor.app.your_data import compare_frame
from advisor.errors import AdvisorError
from app_pages.common import (
    USE_USER_DATA, USER_UPLOADS, catalog, data_banner, models, shipped_models, table,
    using_user_data,
)

st.title("Your data: measurements from your own GPU")
st.markdown(
    "Run the probe on your GPU (`pip install -e '.[probe]' && advisor probe`), then upload the "
    "JSON-lines file it wrote. Each line is checked against the record schema "
    "(`data/measurements/README.md`); bad lines are listed with their line number and skipped. "
    "Your records are compared with what the shipped models predict, and you can refit the "
    "models with them for this session: Plan and Explore then use them. Nothing is stored on "
    f"the server. Limit: {MAX_UPLOAD_MB} MB per file."
)

uploads = st.session_state.setdefault(USER_UPLOADS, {})
files = st.file_uploader("Probe results (.jsonl)", type=["jsonl", "json", "txt"],
                         accept_multiple_files=True, max_upload_size=MAX_UPLOAD_MB,
                         key="your_data_files")
for file in files or []:
    try:
        records, problems = parse_records_upload(file.name, file.getvalue())
    except AdvisorError as exc:
        st.error(str(exc), icon=":material/error:")
        continue
    if problems:
        st.error(f"**{file.name}**: {len(problems)} line(s) skipped:\n"
                 f"{problems_markdown(problems)}", icon=":material/error:")
    if records:
        uploads[file.name] = valid_lines(upload_text(file.name, file.getvalue()), records)
        st.success(f"**{file.name}**: {len(records)} valid record(s).",
                   icon=":material/check_circle:")
    else:
        uploads.pop(file.name, None)
        st.warning(f"**{file.name}**: no valid records, nothing to use.")

if not uploads:
    st.info("No data uploaded yet: the dashboard runs on the shipped measurements.")
    st.stop()

# The toggle's own state is dropped when another page runs; USE_USER_DATA is not a widget key,
# so the choice holds across pages and the toggle is set from it each time this page is drawn.
st.session_state.your_data_use = st.session_state.get(USE_USER_DATA, False)
st.toggle("Use my data in Plan and Explore (refits the models for this session)",
          key="your_data_use", on_change=lambda: st.session_state.update(
              {USE_USER_DATA: st.session_state.your_data_use}))
data_banner()
if st.button("Forget my uploads", key="your_data_forget"):
    uploads.clear()
    st.session_state[USE_USER_DATA] = False
    st.rerun()

parsed = {name: parse_records_upload(name, text.encode())[0] for name, text in uploads.items()}
for name, recs in parsed.items():
    gpus = ", ".join(sorted({r["gpu"]["name"] for r in recs}))
    st.write(f"**{name}**: {len(recs)} record(s) on {gpus}")
records = [r for recs in parsed.values() for r in recs]

compared = compare_frame(records, shipped_models(), catalog())
st.subheader("Beside the shipped data")
if compared.empty or "predicted_latency_s" not in compared:
    st.warning("None of these records is on a GPU the catalog knows (by catalog_id or NVML "
               "name), so nothing can be compared or fitted: add an entry to gpu_catalog.yaml.")
else:
    st.plotly_chart(parity_figure(compared), key="your_data_parity")
    table("your_data_compare", compared[[
        "source", "gpu", "resolution", "batch", "setting", "latency_s", "predicted_latency_s",
        "latency_error_pct", "predicted_source", "peak_memory_gb", "predicted_memory_gb"]],
        column_config={"latency_error_pct": st.column_config.NumberColumn("error %",
                                                                          format="%+.1f")})

if using_user_data():
    refitted = models()
    probed = ", ".join(sorted(refitted.probed))
    st.success(f"Refitted on {len(refitted.records)} records (model {refitted.model_version}); "
               f"GPUs with fitted (not transferred) figures now: {probed}.")
    if refitted.problems:
        st.warning(f"Records the fit skipped:\n{problems_markdown(refitted.problems)}")
