"""The one exception type a user sees as a message instead of a traceback."""
import datetime as dt


class AdvisorError(Exception):
    """Bad input or an impossible request. The message names the file, entry and field."""


def describe(value) -> str:
    """A found value as an error message names it: "number -3", "string 'abc'", "a mapping"."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return f"the list {value!r}" if len(repr(value)) < 60 else f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, dt.date):  # YAML parses 2026-01-31 as a date
        return f"date {value.isoformat()}"
    return type(value).__name__
