"""Errors a user can cause. Each carries the one line we print and the exit status.

Every layer raises them (``data/``, ``models/``, ``training/``), so they live outside all
three and import nothing of the project."""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(Exception):
    """A mistake in the user's config or data: printed as one line, exit status 2."""

    exit_code = 2


class DivergenceError(UserError):
    """The loss became non-finite or exploded: exit status 3."""

    exit_code = 3


class Interrupted(Exception):  # noqa: N818 - a stop the user asked for, not a failure
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the run can be resumed."""

    exit_code = 130


def bad_target(key: str, target: object, exc: BaseException) -> UserError:
    """The one-line error for a ``_target_`` that Hydra's ``instantiate`` could not build
    (a wrong class path, or an argument its constructor refuses): the key, the value and the
    first line of the cause Hydra wrapped."""
    cause = exc.__cause__ or exc
    return UserError(f"bad config value {key}={target!r}: {str(cause).splitlines()[0]}")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` on stderr as one line and exit with status ``code`` (2: a
    config or data error, 3: divergence, 130: interrupted)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
