"""The error raised for bad user input: a missing or corrupt file, a key with an impossible value.

The CLI prints its message as one line (``error: ...``) instead of a traceback, so the message must name
the file or key, say what was expected, and say what to do.
"""


class UserInputError(Exception):
    """Bad input from the user; the message names what is wrong and how to fix it."""


def describe(error: BaseException) -> str:
    """``Type: message`` of an exception caught from a library, for quoting inside a UserInputError."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
