"""User-facing failures: one line that says what is wrong and how to fix it, never a traceback."""


class UsageError(Exception):
    """Wrong flags, arguments or input files: exit code 2."""


class NotFound(Exception):
    """A run or model the user named does not exist: exit code 1."""


class Failed(Exception):
    """The command could not do what was asked (a run that did not finish in time): exit 1."""
