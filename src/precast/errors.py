"""How precast fails: which failures retrying cannot fix, and the CLI's exit codes.

A failure that the same inputs would repeat (a suite that failed, a config that names a
column the SQL lacks, a challenger the gate rejected) derives from `NotRetryable`: the CLI
exits `EXIT_NOT_RETRYABLE` on it and an Airflow task fails at once instead of retrying.
Every other failure (a store that is down, a registry that times out, raw logs not there
yet) is retryable. The test `tests/code/test_errors.py` walks every exception precast
defines and checks its side.

This module imports nothing of precast's: every other module may import it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a step or lookup failed; trying again may succeed
EXIT_BAD_CONFIG = 2  # bad usage or configuration
EXIT_NOT_RETRYABLE = 3  # a step failed in a way that retrying cannot fix
EXIT_INTERRUPTED = 130


class NotRetryable(Exception):
    """A failure that retrying with the same inputs repeats: a person or a config change
    must act first. Precast's exceptions of this kind derive from it (beside the built-in
    exception they are, such as ValueError)."""


def retryable(exc: BaseException) -> bool:
    """Whether trying again may succeed: every failure but a NotRetryable."""
    return not isinstance(exc, NotRetryable)


def exit_code(exc: BaseException) -> int:
    """The CLI's exit status for a step that raised `exc`."""
    return EXIT_FAILED if retryable(exc) else EXIT_NOT_RETRYABLE
