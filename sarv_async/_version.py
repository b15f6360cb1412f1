"""The installed version, read once from the package metadata (pyproject.toml is the source)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("sarv-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
