"""Cached loaders shared by the pages: read once per server process, reused by every session.

The shipped catalog, measurements and fitted models are loaded once (the fit itself comes from
advisor.cache's on-disk cache). A session that uploaded its own probe file and chose to use it
gets models refitted on shipped + uploaded records, cached by the upload's content.
"""
import streamlit as st

from advisor import REPO_ROOT
from advisor.app.measurements import problems_markdown, records_frame
from advisor.app.your_data import fit_with_uploads
from advisor.cache import load_models, validation_of
from advisor.catalog import load_catalog
from advisor.errors import AdvisorError
from advisor.request import Request

EXAMPLE_REQUEST = REPO_ROOT / "examples" / "request.yaml"
USER_UPLOADS = "user_uploads"  # session_state: {upload name: JSON-lines text}, bad lines blanked
USE_USER_DATA = "use_user_data"  # session_state: bool, plan and explore with the uploads


@st.cache_resource(show_spinner=False)
def default_request():
    """The example request (examples/request.yaml): the Plan page's starting point."""
    return Request.from_yaml(EXAMPLE_REQUEST)


@st.cache_resource(show_spinner="Reading the GPU catalog…")
def catalog():
    return load_catalog()


@st.cache_resource(show_spinner="Fitting the latency and memory models (first start only)…")
def _shipped_models():
    return load_models()


@st.cache_resource(show_spinner="Refitting on your data and the shipped measurements…",
                   max_entries=8)
def _user_models(uploads: tuple[tuple[str, str], ...]):
    return fit_with_uploads(dict(uploads))


def using_user_data() -> bool:
    return bool(st.session_state.get(USE_USER_DATA) and st.session_state.get(USER_UPLOADS))


def _or_stop(load):
    """load(), or, when the data cannot give models, the reason on the page and a stop."""
    try:
        return load()
    except AdvisorError as exc:
        st.error(f"No fitted models: {exc}", icon=":material/error:")
        st.stop()


def shipped_models():
    return _or_stop(_shipped_models)


def _active_models():
    if using_user_data():
        return _user_models(tuple(sorted(st.session_state[USER_UPLOADS].items())))
    return _shipped_models()


def models():
    """The models the pages predict with: shipped, or refitted with this session's uploads."""
    return _or_stop(_active_models)


def models_or_reason():
    """(the active models, "") or, when the data cannot give any, (None, why)."""
    try:
        return _active_models(), ""
    except AdvisorError as exc:
        return None, f"fitted models unavailable ({exc})"


def measurements_frame():
    """Records of the active models (shipped, plus uploads when in use) as a table."""
    return records_frame(models().records)


@st.cache_resource(show_spinner="Cross-validating the models (first time only)…", max_entries=8)
def _validation(model_version: str, _models) -> dict:
    return validation_of(_models)


def validation() -> dict:
    """The held-out validation report of the active models (computed once, cached on disk)."""
    m = models()
    return _validation(m.model_version, m)


MISSING = "—"  # a cell without a value: the column's help or the caption says why


def table(key: str, frame, **kwargs) -> None:
    """A read-only table in a container named `key`: st.dataframe records no key of its own
    without row selection, so tests find the table by its container (AppTest
    `at.container(key)`, CSS class `st-key-<key>` in the browser). A missing value shows as a
    dash, never "None"."""
    with st.container(key=key):
        st.dataframe(frame, hide_index=True, placeholder=MISSING, **kwargs)


def text_table(key: str, frame, columns: dict[str, str]) -> None:
    """A table of sentences (reasons, notes) drawn as text that wraps, so nothing is cut off:
    `columns` maps the frame's columns to their headers. Found like table()."""
    with st.container(key=key):
        st.table(frame[list(columns)].rename(columns=columns).fillna(MISSING), hide_index=True)


# Widths (px) of characters in the grids' 14 px Source Sans, by kind, to size a column so that
# its longest text shows whole (measured in Chromium: lower case ~6 px, digits 7, capitals ~9).
CHAR_PX = {"narrow": 3.6, "lower": 6.3, "digit": 7.0, "upper": 9.0, "wide": 12.0, "other": 5.0,
           "lower_wide": 9.5}
CELL_PADDING_PX = 24


def _char_px(c: str) -> float:
    if c in "ijlftr .,:;'|!()[]-":
        return CHAR_PX["narrow"]
    if c in "WM@%":
        return CHAR_PX["wide"]
    if c in "mw":
        return CHAR_PX["lower_wide"]
    kind = ("lower" if c.islower() else "digit" if c.isdigit() else "upper" if c.isupper()
            else "other")
    return CHAR_PX[kind] if c.isascii() else CHAR_PX["upper"]


def width_for(values, header: str = "") -> int:
    """A column width (px) that shows the longest of `values` and the header whole, within
    Streamlit's limits for a column."""
    texts = [str(v) for v in values] + [header]
    return int(min(max(max(sum(map(_char_px, t)) for t in texts) + CELL_PADDING_PX, 50), 1000))


def data_banner() -> None:
    """Which data the page uses, and every measurement line the fit skipped (file and line)."""
    if using_user_data():
        names = ", ".join(st.session_state[USER_UPLOADS])
        st.info(f"Using your data ({names}) together with the shipped measurements. "
                "Switch it off on the **Your data** page.", icon=":material/upload_file:")
    m, _ = models_or_reason()
    if m is not None and m.problems:
        st.warning(f"{len(m.problems)} measurement problem(s); what they name was left out "
                   "of the fit:\n"
                   f"{problems_markdown(m.problems)}", icon=":material/warning:")


def provenance_note() -> None:
    st.caption(
        "**measured**: a probe record of a real pipeline run · **fitted**: the latency/memory "
        "model on that GPU's own records · **transferred**: fitted on other GPUs and carried "
        "over by their catalog specs (least sure) · **spec**: the catalog's datasheet figure"
    )
