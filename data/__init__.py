"""Data sources, preprocessing and loaders. The shipped housing CSV lives in ``data/housing/``."""
