"""Real-parts fixtures: a private Orthanc 1.10 (DICOMweb plugin) loaded with the sample studies.

``orthanc`` / ``orthanc_auth`` are session-scoped :class:`zipproxy.demo.orthanc.SampleUpstream`
objects: ``.url`` (``http://127.0.0.1:PORT``), ``.dicomweb`` (``.url + "/dicom-web"``),
``.auth`` (``None`` or ``("alice", "secret")``), ``.studies`` (``list[StudyInfo]`` from
``make_samples``, in its order), ``.study(patient_id)``, ``.orthanc`` (the server object).
Tests must not add or delete instances on them: use ``Orthanc`` directly for that.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zipproxy.demo.orthanc import DEFAULT_BINARY, SampleUpstream, start_with_samples

AUTH_USERS = {"alice": "secret"}


def _require_orthanc() -> None:
    if not Path(DEFAULT_BINARY).exists():
        pytest.fail(
            f"{DEFAULT_BINARY} not found: apt-get install -y orthanc orthanc-dicomweb",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleUpstream]:
    """Orthanc without authentication, the sample studies uploaded via ``POST /instances``."""
    _require_orthanc()
    with start_with_samples(tmp_path_factory.mktemp("orthanc")) as upstream:
        yield upstream


@pytest.fixture(scope="session")
def orthanc_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleUpstream]:
    """Orthanc with basic auth (users ``{"alice": "secret"}``), the same samples uploaded."""
    _require_orthanc()
    with start_with_samples(tmp_path_factory.mktemp("orthanc-auth"), users=AUTH_USERS) as upstream:
        yield upstream
