"""What a user can fix: `UserError`.

`sparks` prints a UserError (and the ValueError / FileNotFoundError / FileExistsError that bad
input raises: a malformed config, a missing path, a directory already there) as one line,
`sparks: error: ...`, and exits with status 2. Anything else is a defect and keeps its traceback;
`sparks --debug ...` shows the traceback of every error.
"""

from __future__ import annotations


class UserError(RuntimeError):
    """A failure the user can fix; the message says what is wrong and what to do."""


USER_ERRORS: tuple[type[Exception], ...] = (
    UserError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
)
