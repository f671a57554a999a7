"""The error the analysis tools raise for input they cannot use."""


class AnalysisInputError(ValueError):
    """A path, layer pattern or metric the analysis tools cannot use.

    The message names the offending input and what was expected, so the
    command-line tools print it as is (no traceback).
    """
