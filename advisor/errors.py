"""The one exception type a user sees as a message instead of a traceback."""


class AdvisorError(Exception):
    """Bad input or an impossible request. The message names the file, entry and field."""
