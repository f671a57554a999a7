"""The error the analysis tools raise for input they cannot use."""


class AnalysisInputError(ValueError):
    """A path, layer pattern or metric the analysis tools cannot use.

    The message names the offending input and what was expected, so the
    command-line tools print it as is (no traceback).
    """


def run_cli(prog: str, run, args) -> int:
    """Run a tool's ``run(args)``; an :class:`AnalysisInputError` becomes one
    ``PROG: error: ...`` line on stderr and exit status 2 (no traceback)."""
    import sys
    try:
        run(args)
    except AnalysisInputError as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    return 0
