"""Bad user input ends in one line naming the key or file and the fix, never in a traceback.

``UserInputError`` carries such a line. :func:`report_errors` runs a command and turns a UserInputError
found anywhere in an exception's chain (jsonargparse and Lightning wrap the errors raised while building
a class or running a hook), or a file-system error (no permission, read-only, disk full), into
``error: <line>``. Anything else is a bug and keeps its traceback; ``INTERPRETABILITY_DEBUG=1`` shows the
traceback of every error.
"""

import argparse
import errno
import os
import sys
from collections.abc import Callable, Iterator

DEBUG_VARIABLE = "INTERPRETABILITY_DEBUG"
FILE_SYSTEM_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class UserInputError(Exception):
    """Bad input from the user; the message names what is wrong and how to fix it."""


def describe(error: BaseException) -> str:
    """``Type: message`` of an exception caught from a library, for quoting inside a UserInputError."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def is_number(value) -> bool:
    """An int or float as YAML gives it (a bool is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_positive(owner: str, **values: float | None) -> None:
    """Refuse a value that is not positive (None is allowed: 'not set'), naming ``owner.key``."""
    for key, value in values.items():
        if value is not None and value <= 0:
            raise UserInputError(f"{owner}.{key}={value} must be positive")


def check_not_negative(owner: str, **values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise UserInputError(f"{owner}.{key}={value} must be 0 or more")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def one_line(error: BaseException) -> str | None:
    """The line a user should see for ``error``, or None when it is not bad input (a bug)."""
    chain = list(_chain(error))
    for cause in chain:
        if isinstance(cause, UserInputError):
            return str(cause)
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in FILE_SYSTEM_ERRORS:
            return (
                f"cannot write {cause.filename or 'a file'}: {cause.strerror}; free space or make the folder "
                "writable, or write the run elsewhere (--trainer.default_root_dir)"
            )
    return None


def report_errors(command: Callable[[], object]) -> None:
    """Run ``command``; bad input ends the process with ``error: <one line>`` (status 1)."""
    try:
        command()
    except Exception as error:
        message = one_line(error)
        if message is None or os.environ.get(DEBUG_VARIABLE) == "1":
            raise
        sys.exit(f"error: {message}")


def run_subcommand(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Parse ``argv`` and call the chosen subcommand's ``run``; bad input ends with ``error: ...``."""
    args = parser.parse_args(argv)
    report_errors(lambda: args.run(args))
