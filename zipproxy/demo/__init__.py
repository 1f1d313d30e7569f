"""Real-parts helpers for tests, demos and benchmarks.

- :mod:`zipproxy.demo.samples` -- deterministic sample studies written with pydicom.
- :mod:`zipproxy.demo.orthanc` -- start/stop a private Orthanc (DICOMweb plugin) by hand.
- :mod:`zipproxy.demo.load` -- load instances into a DICOMweb server with STOW-RS.
"""

from __future__ import annotations

try:
    import requests  # noqa: F401
    import requests_toolbelt  # noqa: F401
except ImportError as exc:  # a plain `pip install zipproxy`: the proxy alone
    raise ImportError("zipproxy.demo needs the demo extra: pip install 'zipproxy[demo]' "
                      "(scripts/setup.sh installs it)") from exc

from zipproxy.demo.load import stow
from zipproxy.demo.orthanc import Orthanc, OrthancError, SampleUpstream
from zipproxy.demo.samples import (
    SampleInstance,
    StudyInfo,
    make_bulk_study,
    make_samples,
    make_study,
)

__all__ = [
    "Orthanc",
    "OrthancError",
    "SampleInstance",
    "SampleUpstream",
    "StudyInfo",
    "make_bulk_study",
    "make_samples",
    "make_study",
    "stow",
]
