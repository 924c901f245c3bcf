"""The user errors moved to the top-level ``errors`` module (``data/`` and ``models/`` import
them too, and they import nothing from ``training/``); this name stays for code written
against it."""

from errors import DivergenceError, Interrupted, UserError

__all__ = ["DivergenceError", "Interrupted", "UserError"]
