"""Flax NNX models. Any module whose ``__call__`` maps ``(n, features)`` to ``(n,)`` can train."""

from models.build import build_model
from models.linear import LinearRegression

__all__ = ["LinearRegression", "build_model"]
