"""precast: batch prediction from application logs to a SQL prediction table."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("precast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
