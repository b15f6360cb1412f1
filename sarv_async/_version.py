"""The version: written here once; the build reads it from here (``[tool.hatch.version]``)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
"""The installed version of sarv-async."""
