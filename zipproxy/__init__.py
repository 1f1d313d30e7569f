"""zipproxy: a streaming DICOM ZIP reverse proxy in front of any DICOMweb server."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zipproxy")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
