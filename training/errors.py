"""Errors a user can cause. Each carries the one line we print and the exit status."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's config or data: printed as one line, exit status 2."""

    exit_code = 2


class DivergenceError(UserError):
    """The loss became non-finite or exploded: exit status 3."""

    exit_code = 3


class Interrupted(Exception):  # noqa: N818 - a stop the user asked for, not a failure
    """SIGTERM/SIGINT arrived; a checkpoint was saved and the run can be resumed."""

    exit_code = 130
