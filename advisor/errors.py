"""The one exception type a user sees as a message instead of a traceback."""
import datetime as dt
import reprlib

# Messages quote what they found in a few dozen characters at most: a found value can be a
# 100 MB string or a list of a million items, and repr() of it would cost as much.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxlevel = 2
MAX_MESSAGE_CHARS = 20_000  # what the CLI prints of one message at most


class AdvisorError(Exception):
    """Bad input or an impossible request. The message names the file, entry and field."""


def shown(value) -> str:
    """repr() of a found value, cut to a few dozen characters ("'abc...xyz'", "[1, 2, ...]")."""
    return _SHORT.repr(value)


def escaped(text: str) -> str:
    """`text` as a terminal shows it safely: control and other unprintable characters (escape
    sequences, carriage returns, bells) written as escapes (`\\x1b`); newlines and tabs kept."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode()
                   for c in text)


def describe(value) -> str:
    """A found value as an error message names it: "number -3", "string 'abc'", "a mapping"."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float)):
        return f"number {shown(value)}"
    if isinstance(value, str):
        return f"string {shown(value)}" + _number_hint(value)
    if isinstance(value, list):
        return f"the list {shown(value)}" if len(value) <= 4 else f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, dt.date):  # YAML parses 2026-01-31 as a date
        return f"date {value.isoformat()}"
    return type(value).__name__


def _number_hint(text: str) -> str:
    """Why a number may have arrived as text: it was quoted, or written in a form YAML 1.1
    reads as a string."""
    if len(text) > 40 or not any(c.isdigit() for c in text):
        return ""
    try:
        float(text.replace("_", ""))
    except ValueError:
        return ""
    return " (a number in quotes is text: remove the quotes)"
