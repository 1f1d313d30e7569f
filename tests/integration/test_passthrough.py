"""Everything that is not a ZIP passes through unchanged: QIDO, metadata, multipart, STOW, REST."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from conftest import Proxy

from zipproxy.demo.load import stow
from zipproxy.demo.orthanc import Orthanc, SampleUpstream
from zipproxy.demo.samples import make_study


def test_qido_matches_upstream(proxy: Proxy, orthanc: SampleUpstream) -> None:
    via = requests.get(f"{proxy.url}/dicom-web/studies", timeout=30)
    direct = requests.get(f"{orthanc.dicomweb}/studies", timeout=30)
    assert via.status_code == 200 and via.content == direct.content
    assert via.headers["Content-Type"] == direct.headers["Content-Type"]
    names = json.dumps(via.json(), ensure_ascii=False)
    assert "山田^太郎" in names and "Müller^Jürgen" in names


def test_metadata_and_multipart_retrieve_unchanged(proxy: Proxy, orthanc: SampleUpstream) -> None:
    uid = orthanc.studies[0].study_uid
    via = requests.get(f"{proxy.url}/dicom-web/studies/{uid}/metadata", timeout=30)
    assert via.status_code == 200 and via.headers["Content-Type"].startswith(
        "application/dicom+json"
    )
    direct = requests.get(f"{orthanc.dicomweb}/studies/{uid}/metadata", timeout=30)
    assert via.json() == direct.json()
    # No zip asked: the multipart answer streams through untouched.
    via = requests.get(f"{proxy.url}/dicom-web/studies/{uid}", timeout=60)
    assert via.headers["Content-Type"].startswith("multipart/related")
    assert via.content.count(b"application/dicom") >= len(orthanc.studies[0].instances)


def test_upstream_rest_api_and_x_forwarded(proxy: Proxy, orthanc: SampleUpstream) -> None:
    r = requests.get(f"{proxy.url}/system", timeout=30)
    assert (r.status_code == 200 and "DicomWeb" in r.text) or "Version" in r.json()


def test_stow_through_the_proxy(tmp_path: Path) -> None:
    """A private Orthanc: the shared one must keep exactly the sample studies."""
    info = make_study(
        tmp_path / "files",
        patient_name="Stow^Test",
        patient_id="STOW-1",
        series=[("CT", 3, 16, 16, 1)],
        key="stow-through-proxy",
    )
    with Orthanc(tmp_path / "orthanc") as server:
        p = Proxy(server.url, tmp_path)
        try:
            result = stow(f"{p.url}/dicom-web", info.files)
        finally:
            p.stop()
        assert "00081199" in result  # Referenced SOP Sequence: stored
        qido = requests.get(f"{server.dicomweb}/studies/{info.study_uid}/instances", timeout=30)
        assert len(qido.json()) == 3
