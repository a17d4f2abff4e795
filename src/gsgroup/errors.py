"""User-facing errors. The CLI prints these as one line, without a traceback."""


class InputError(ValueError):
    """Bad user input: a missing or malformed file, a wrong shape, a NaN.

    The message names the offending file (or argument) and says how to fix it.
    """
