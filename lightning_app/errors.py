"""The error raised for bad user input: a missing or corrupt file, a key with an impossible value.

The CLI prints its message as one line (``error: ...``) instead of a traceback, so the message must name
the file or key, say what was expected, and say what to do.
"""

import argparse
import sys


class UserInputError(Exception):
    """Bad input from the user; the message names what is wrong and how to fix it."""


def describe(error: BaseException) -> str:
    """``Type: message`` of an exception caught from a library, for quoting inside a UserInputError."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def run_subcommand(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Parse ``argv`` and call the chosen subcommand's ``run``; bad input ends with ``error: ...``."""
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except UserInputError as error:
        sys.exit(f"error: {error}")
