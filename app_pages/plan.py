import pandas as pd
import streamlit as st
import yaml

from advisor.app.charts import cost_latency_figure, fleet_figure, throughput_figure
from advisor.app.plan_form import (
    DEMAND_UNITS, editor_rows, form_from_request, price_sheet_from_upload, request_from_form,
    request_from_upload,
)
from advisor.app import LOSSY_NOTE, precision_label
from advisor.app.plan_results import (
    fleet_vs_demand, frontier_frame, headline, lossy_frame, lossy_markdown, not_recommended_frame,
    options_frame, plan_yaml, planner_key, price_needed_frame, reasons_markdown,
)
from advisor.app.uploads import MAX_UPLOAD_MB
from advisor.contract import ATTENTIONS, LATENCY_BASES, OFFLOADS, PRECISIONS
from advisor.errors import AdvisorError
from advisor.request import MODES, SEGMENTS
from app_pages.common import (
    MISSING, USER_UPLOADS, catalog, data_banner, default_request, models, provenance_note, table,
    text_table, using_user_data, width_for,
)

NOT_RECOMMENDED = {"gpu": "GPU", "verdict": "verdict", "reason": "why not"}
EDITORS = ("resolutions", "cloud_prices", "gpu_prices")  # fields edited in a table
BASIS_LABELS = {"auto": "prediction; slow end for unprobed GPUs",
                "point": "the prediction, every GPU", "upper": "the slow end, every GPU"}


def _state_key(field: str) -> str:
    return f"plan_{field}_rows" if field in EDITORS else f"plan_{field}"


def load_form(request) -> None:
    """Put a request into the widgets (before they are drawn) and keep it as the base."""
    st.session_state.plan_base = request.to_dict()
    st.session_state.plan_form = form_from_request(request)
    st.session_state.plan_version = st.session_state.get("plan_version", 0) + 1
    for field, value in st.session_state.plan_form.items():
        st.session_state[_state_key(field)] = value


def restore_form() -> None:
    """Streamlit drops widget state when the page is left: put the last values back."""
    version = st.session_state.plan_version
    for field, value in st.session_state.plan_form.items():
        if field not in EDITORS:
            st.session_state.setdefault(_state_key(field), value)
        elif f"plan_{field}_{version}" not in st.session_state:
            st.session_state[_state_key(field)] = value


def editor(field: str, columns: dict, **kwargs) -> list[dict]:
    rows = pd.DataFrame(st.session_state[f"plan_{field}_rows"], columns=list(columns))
    edited = st.data_editor(rows, key=f"plan_{field}_{st.session_state.plan_version}",
                            num_rows="dynamic", hide_index=True, column_config=columns, **kwargs)
    return editor_rows(edited)


def upload_box() -> None:
    file = st.file_uploader("Load a saved request or plan (YAML)", type=["yaml", "yml"],
                            max_upload_size=MAX_UPLOAD_MB, key="plan_upload")
    if file is None or st.session_state.get("plan_loaded") == file.file_id:
        return
    try:
        request = request_from_upload(file.name, file.getvalue())
    except AdvisorError as exc:
        st.error(f"Not loaded: {exc}", icon=":material/error:")
        return
    st.session_state.plan_loaded = file.file_id
    load_form(request)
    st.rerun()


def price_sheet_box() -> dict:
    """Your price sheet (YAML, as `advisor recommend --prices`): it wins over the table above
    and the catalog. Returns the sheet in use (a loaded request's, or the last upload)."""
    file = st.file_uploader(
        "Or load your price sheet (YAML)", type=["yaml", "yml"], max_upload_size=MAX_UPLOAD_MB,
        key="plan_price_upload",
        help="prices: {rtx-4090: {buy_usd: 1999, cloud_usd_per_hour: 0.69, date: 2026-12-01, "
             "note: our quote}}; over the table above and the catalog, recorded in the plan")
    if file is not None and st.session_state.get("plan_price_loaded") != file.file_id:
        try:
            st.session_state.plan_price_sheet = price_sheet_from_upload(file.name,
                                                                        file.getvalue())
            st.session_state.plan_price_loaded = file.file_id
        except AdvisorError as exc:
            st.error(f"Price sheet not loaded: {exc}", icon=":material/error:")
    sheet = st.session_state.get("plan_price_sheet") or {}
    if sheet:
        st.caption("Price sheet in use: " + "; ".join(
            f"{gpu} " + ", ".join(f"{k} {v}" for k, v in p.items()) for gpu, p in sheet.items()))
    return sheet


def convert_demand() -> None:
    """A new demand unit keeps the demand: the number is converted, not reinterpreted."""
    state = st.session_state
    per_s = state.plan_demand / DEMAND_UNITS[state.plan_form["demand_unit"]]
    state.plan_demand = per_s * DEMAND_UNITS[state.plan_demand_unit]


def request_form() -> dict:
    """The request widgets (sidebar); returns their values as a plain dict."""
    f, ids = {}, catalog().ids()
    st.header("Your request")
    c1, c2 = st.columns([3, 2])
    f["demand"] = c1.number_input("Average demand", min_value=0.001, key="plan_demand",
                                  format="%g")
    f["demand_unit"] = c2.selectbox("images per", list(DEMAND_UNITS), key="plan_demand_unit",
                                    format_func=lambda unit: unit.split("/")[1],
                                    on_change=convert_demand)
    f["peak_factor"] = st.number_input("Peak / average", 1.0, 100.0, step=0.5,
                                       key="plan_peak_factor",
                                       help="The fleet holds the SLO at average × this.")
    c1, c2 = st.columns(2)
    f["slo_quantile"] = c1.radio("Latency SLO", ["p95", "p99"], horizontal=True,
                                 key="plan_slo_quantile")
    f["slo_s"] = c2.number_input("within (s)", min_value=0.1, step=0.5, key="plan_slo_s")
    st.caption("Resolution mix (shares in %, adding up to 100)")
    number = st.column_config.NumberColumn
    f["resolutions"] = editor("resolutions", {
        "width": number("width", min_value=16, step=16, width=62),
        "height": number("height", min_value=16, step=16, width=62),
        "share_pct": number("share %", min_value=0, max_value=100, width=62)})

    st.subheader("Deployment and prices")
    f["mode"] = st.radio("Pay as", MODES, horizontal=True, key="plan_mode",
                         format_func={"cloud": "cloud (per GPU-hour)",
                                      "owned": "owned (buy + power)"}.get)
    price_field = "cloud_prices" if f["mode"] == "cloud" else "gpu_prices"
    unit = "USD per GPU-hour" if f["mode"] == "cloud" else "USD per GPU"
    st.caption(f"Your prices ({unit}); GPUs not listed use the catalog's price, if it has one.")
    f[price_field] = editor(price_field, {
        "gpu": st.column_config.SelectboxColumn("GPU", options=ids, required=True),
        "price": number(unit, min_value=0.01)})
    other = "gpu_prices" if price_field == "cloud_prices" else "cloud_prices"
    f[other] = st.session_state[f"plan_{other}_rows"]
    f["price_sheet"] = price_sheet_box()
    f["gpus_per_server"] = st.number_input("GPUs per server", 1, 64, key="plan_gpus_per_server")
    owned = f["mode"] == "owned"
    f["server_usd"] = st.number_input("Server price (USD, without GPUs)", 0.0, step=1000.0,
                                      key="plan_server_usd", disabled=not owned)
    f["amortization_years"] = st.number_input("Amortization (years)", 0.5, 30.0, step=0.5,
                                              key="plan_amortization_years", disabled=not owned)
    f["usd_per_kwh"] = st.number_input("Electricity (USD/kWh)", 0.0, 10.0, step=0.01,
                                       key="plan_usd_per_kwh", disabled=not owned)

    st.subheader("Candidates")
    f["gpus"] = st.multiselect("GPUs (empty: every runnable catalog GPU)", ids, key="plan_gpus")
    f["segments"] = st.multiselect("Segments (empty: all)", SEGMENTS, key="plan_segments")
    f["precisions"] = st.multiselect(
        "Precisions", PRECISIONS, key="plan_precisions", format_func=precision_label,
        help="bf16 alone by default; the plan says what each lossy one left out would change")
    st.caption(f"⚠ {LOSSY_NOTE}")
    with st.expander("Settings searched and constraints"):
        batches = sorted({1, 2, 4, 8, 16, 32, *st.session_state.plan_batches})
        f["batches"] = st.multiselect("Max batch sizes (must include 1)", batches,
                                      key="plan_batches")
        f["compile"] = st.multiselect("torch.compile", [False, True], key="plan_compile")
        f["attention"] = st.multiselect("Attention", ATTENTIONS, key="plan_attention")
        f["offload"] = st.multiselect("CPU offload", OFFLOADS, key="plan_offload")
        f["latency_basis"] = st.selectbox(
            "Size service times on", LATENCY_BASES, key="plan_latency_basis",
            format_func=BASIS_LABELS.get,
            help="auto: a GPU never probed (transferred figures, the widest error) on the slow "
                 "end of its 90% interval, measured and fitted figures on the prediction")
        f["n_plus_one"] = st.toggle("N+1: one spare GPU", key="plan_n_plus_one")
        f["max_gpus"] = st.number_input("At most GPUs", 1, 1_000_000, key="plan_max_gpus")
    return f


# Cached by the request's file form, the model version and the planner code + catalog (the
# arguments with a leading underscore are not hashed); kept on disk across restarts, so the
# first page of a new server process shows without re-planning.
@st.cache_data(show_spinner=False, max_entries=64, persist="disk")
def _recommend(request_key: str, model_version: str, planner: str, _request, _models):
    from advisor.plan import recommend

    return recommend(_request, _models, catalog())


@st.cache_data(show_spinner=False, max_entries=64, persist="disk")
def _fleet(request_key: str, model_version: str, planner: str, _plan, _models):
    return fleet_vs_demand(_plan, _models, catalog())


def show_answer(plan) -> None:
    h = headline(plan)
    if not h["ok"]:
        st.warning(h["text"], icon=":material/block:")
        return
    st.success(h["text"], icon=":material/shopping_cart:")
    c = st.columns(4)
    c[0].metric("Monthly cost", f"${h['usd_per_month']:,.0f}", help=h["price_source"])
    c[1].metric("Per 1,000 images", f"${h['usd_per_1k_images']:,.2f}",
                help="monthly cost / images at the average demand")
    c[2].metric(f"Latency at peak ({h['slo']})", f"{h['latency_s']:.2f} s",
                help=f"simulated with queueing and batching on {h['sources']} service times")
    if plan.request.deployment.mode == "owned":
        c[3].metric("Up-front (capex)", f"${h['capex_usd']:,.0f}")
    else:
        c[3].metric("Up-front (capex)", "none", help="cloud: paid by the hour")
    st.caption(f"Fleet and latency: queueing simulation on **{h['sources']}** service times · "
               f"prices: {h['price_source']}")
    st.markdown(f"**How sure:** {h['sure']}")
    if h["lossy"]:
        st.warning(h["lossy"], icon=":material/warning:")


def show_lossy(plan, request) -> None:
    """What each lossy precision the request leaves out would change, with the caveat."""
    if not plan.lossy_alternatives:
        return
    number = st.column_config.NumberColumn
    st.subheader("What a lossy precision would change")
    st.warning(LOSSY_NOTE, icon=":material/warning:")
    lossy = lossy_frame(plan)
    table("plan_lossy", lossy, column_order=(
        "precision", "what", "option", "gpus_change", "usd_per_month_change", "latency_s"),
        column_config={
        "what": "which", "option": st.column_config.TextColumn(
            "fleet", width=width_for(lossy.option.dropna(), "fleet")),
        "gpus_change": number("Δ GPUs", format="%+d", help="against the chosen option"),
        "usd_per_month_change": number("Δ USD / month", format="%+,.0f",
                                       help="against the chosen option"),
        "latency_s": number(f"{request.slo_label} at peak (s)", format="%.2f")})
    st.caption(f"{MISSING}: no option with this precision (the lines below say why).")
    st.markdown(lossy_markdown(plan))


def option_columns(request, options) -> dict:
    """The option tables' headers, units and help, and widths that show each GPU name whole."""
    number, text = st.column_config.NumberColumn, st.column_config.TextColumn
    slo = request.slo_label
    return {
        "rank": number("#"), "gpu_name": text("GPU", width=width_for(options.gpu_name, "GPU")),
        "total_gpus": number("GPUs"),
        "usd_per_month": number("USD / month", format="$%,.0f"),
        "usd_per_1k_images": number("USD / 1k images", format="$%.2f"),
        "latency_s": number(f"{slo} at peak (s)", format="%.2f"),
        "short_test": text(
            f"{slo} a short test sees",
            help=f"The plan's {slo} is the long run. A load test of the fleet at peak of this "
                 "length measures a value in this range in 90% of runs (the simulation cut into "
                 "such runs): a short test sees less of the queue's tail."),
        "utilization_pct": number("busy at peak", format="%.0f%%",
                                  help="GPU busy time at peak demand, percent"),
        "headroom_pct": number("SLO headroom", format="%.0f%%",
                               help="how far the latency at peak is below the SLO, percent"),
        "per_gpu_img_per_s": number("img/s per GPU", format="%.2f"),
        "basis": text("least sure", help="the least sure of the option's service times: "
                                         "measured, fitted or transferred"),
        "sources": "service times", "max_batch": number("max batch"), "servers": "servers",
        "setting": text("setting", width=width_for(options.setting, "setting")),
        "gpus_point_upper": text(
            "GPUs: point / slow",
            help="A GPU never probed: its fleet sized on the predicted time and on the slow end "
                 "of the 90% interval (the ranking uses the request's basis)"),
        "usd_point_upper": "USD / month: point / slow",
        "probing_settles": text(
            "probing settles", help="the difference between the two fleets: what one probe "
                                    "run of this GPU can settle"),
    }


def show_tables_and_charts(plan, m, request, key: str) -> None:
    options = options_frame(plan.options, request)
    if options.empty:
        return
    st.subheader("Ranked options (cheapest fleet per GPU meeting the SLO)")
    columns = option_columns(request, options)
    table("plan_options", options, column_order=(
        "rank", "gpu_name", "total_gpus", "usd_per_month", "usd_per_1k_images", "latency_s",
        "basis"), column_config=columns)
    st.caption("How each option runs:")
    table("plan_options_run", options, column_order=(
        "gpu_name", "setting", "max_batch", "servers", "per_gpu_img_per_s"),
        column_config=columns)
    st.caption("How loaded each fleet is at peak, and what a short load test of it would "
               "measure:")
    table("plan_options_load", options, column_order=(
        "gpu_name", "utilization_pct", "headroom_pct", "short_test"), column_config=columns)
    unprobed = options[options.probing_settles != ""]
    if not unprobed.empty:
        st.caption("GPUs never probed, sized on the prediction and on the slow end of its "
                   "interval (the probe that settles it: below, under each option):")
        table("plan_options_bases", unprobed, column_order=(
            "gpu_name", "gpus_point_upper", "usd_point_upper", "probing_settles"),
            column_config=columns)
    unpriced = price_needed_frame(plan)
    if not unpriced.empty:
        st.subheader("Sized, but without a price to rank them by")
        st.caption("Fewest GPUs first. Give a price (the table in the sidebar, or a price "
                   f"sheet: `{unpriced.price_field.iat[0]}` and the like) to compare them with "
                   "the options above.")
        table("plan_price_needed", unpriced, column_order=(
            "gpu_name", "total_gpus", "latency_s", "gpus_point_upper", "basis"),
            column_config=option_columns(request, unpriced))
    with st.expander("Why each option, and what its figures cannot tell", expanded=True):
        st.markdown(reasons_markdown(plan.options))
    # Lazy tabs: only the open tab's chart is built and sent (a rerun when another is opened).
    cost, fleet, throughput = st.tabs(["Cost vs latency", "Fleet vs demand", "Throughput per GPU"],
                                      key="plan_chart_tab", on_change="rerun")
    if cost.open:
        frontier = frontier_frame(plan.frontier, request)
        cost.plotly_chart(cost_latency_figure(options, frontier, request.slo_s,
                                              request.slo_label), key="plan_cost_chart")
        with cost:
            st.caption("The frontier: no other option is both cheaper and faster. Points not "
                       "ranked are other batch or fleet sizes of a ranked GPU.")
            table("plan_frontier", frontier, column_order=(
                "label", "ranking", "usd_per_1k_images", "latency_s", "basis", "setting"),
                column_config={
                    **option_columns(request, frontier),
                    "label": st.column_config.TextColumn(
                        "option", width=width_for(frontier.label, "option"))})
    if fleet.open:
        with fleet, st.spinner("Re-sizing the top picks at other demands…"):
            by_demand = _fleet(key, m.model_version, planner_key(catalog()), plan, m)
            st.plotly_chart(fleet_figure(by_demand, request.peak_images_per_s),
                            key="plan_fleet_chart")
    if throughput.open:
        throughput.plotly_chart(throughput_figure(options), key="plan_throughput_chart")


st.title("Plan: which GPUs, how many, at what cost")
data_banner()
if "plan_form" not in st.session_state:
    load_form(default_request())
restore_form()
with st.sidebar:
    upload_box()
    form = request_form()
st.session_state.plan_form = form

try:
    request = request_from_form(form, st.session_state.plan_base)
except AdvisorError as exc:
    st.error(f"Fix the request: {exc}", icon=":material/error:")
    st.stop()

m = models()
key = yaml.safe_dump(request.to_dict(), sort_keys=True)
with st.spinner("Sizing fleets (queueing simulation) for every GPU and setting…"):
    try:
        plan = _recommend(key, m.model_version, planner_key(catalog()), request, m)
    except AdvisorError as exc:
        st.error(f"Cannot plan: {exc}", icon=":material/error:")
        st.stop()

show_answer(plan)
show_tables_and_charts(plan, m, request, key)
show_lossy(plan, request)
uploads = st.session_state.get(USER_UPLOADS) if using_user_data() else None
cat = catalog()
st.download_button("Download this plan (YAML)", lambda: plan_yaml(plan, m, cat, uploads),
                   file_name="zimage-plan.yaml", mime="application/x-yaml", key="plan_download",
                   icon=":material/download:", on_click="ignore")
if plan.best() is None:  # the headline points here: the reasons are the answer
    st.subheader("Why no GPU qualifies")
    text_table("plan_not_recommended", not_recommended_frame(plan), NOT_RECOMMENDED)
else:  # lazy: the table is built and sent only once the expander is opened
    not_recommended = st.expander("GPUs not recommended, and why",
                                  key="plan_not_recommended_open", on_change="rerun")
    if not_recommended.open:
        with not_recommended:
            text_table("plan_not_recommended", not_recommended_frame(plan), NOT_RECOMMENDED)
with st.expander("Assumptions"):
    st.markdown("\n".join(f"- {a}" for a in plan.assumptions))
provenance_note()
