"""User-facing errors. The CLI prints these as one line, without a traceback."""


class InputError(ValueError):
    """Bad user input: a missing or malformed file, a wrong shape, a NaN.

    The message names the offending file or parameter and says how to fix it. ``param``: the
    name of the offending function parameter, when the message starts with it; the CLI puts the
    matching flag in its place (``color`` -> ``--color``).
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param
