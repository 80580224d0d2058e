"""Data for the dashboard, one module per page (app_pages/): plain tables and figures.

No streamlit here: the pages cache and draw what these functions return, and the tests call them
directly. Uploads are size-checked, decoded as UTF-8 and parsed with yaml.safe_load or JSON
(through advisor.records); nothing is unpickled or executed.
"""
from advisor.contract import QUALITY_CAVEAT, QUANTIZATIONS

# Beside every lossy precision the dashboard offers.
LOSSY_NOTE = f"{', '.join(QUANTIZATIONS)}: {QUALITY_CAVEAT}"


def precision_label(precision: str) -> str:
    """A precision as the dashboard's choices list it: the lossy (quantized) ones marked."""
    return f"{precision} (lossy)" if precision in QUANTIZATIONS else precision
