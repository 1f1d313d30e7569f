"""Everything that is not a ZIP passes through unchanged: QIDO, metadata, multipart, STOW, REST."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from conftest import Proxy, StartProxy

from zipproxy.demo.load import stow
from zipproxy.demo.orthanc import Orthanc, SampleUpstream
from zipproxy.demo.samples import make_study


def test_qido_matches_upstream(proxy: Proxy, orthanc: SampleUpstream) -> None:
    via = requests.get(f"{proxy.url}/dicom-web/studies", timeout=30)
    direct = requests.get(f"{orthanc.dicomweb}/studies", timeout=30)
    # Byte for byte, except that the upstream's RetrieveURLs now lead through the proxy.
    assert orthanc.url.encode() in direct.content
    assert via.status_code == 200
    assert via.content == direct.content.replace(orthanc.url.encode(), proxy.url.encode())
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
    assert via.content == direct.content.replace(orthanc.url.encode(), proxy.url.encode())
    # No zip asked: the multipart answer streams through untouched.
    via = requests.get(f"{proxy.url}/dicom-web/studies/{uid}", timeout=60)
    assert via.headers["Content-Type"].startswith("multipart/related")
    assert via.content.count(b"application/dicom") >= len(orthanc.studies[0].instances)


def test_upstream_rest_api(proxy: Proxy, orthanc: SampleUpstream) -> None:
    r = requests.get(f"{proxy.url}/system", timeout=30)
    assert r.status_code == 200 and r.json()["Version"]


def test_upstream_urls_lead_back_through_the_proxy(
    proxy: Proxy, orthanc: SampleUpstream, start_proxy: StartProxy
) -> None:
    """The upstream writes URLs into QIDO and metadata answers (PS3.18 F.2.6); behind the proxy
    they must lead to the proxy, never to the upstream clients may not reach."""
    study = orthanc.studies[0]
    forged = {"Forwarded": "host=evil.example;proto=https", "X-Forwarded-Host": "evil.example"}
    found = requests.get(f"{proxy.url}/dicom-web/studies?StudyInstanceUID={study.study_uid}",
                         headers=forged, timeout=30).json()
    retrieve_url = found[0]["00081190"]["Value"][0]
    assert retrieve_url == f"{proxy.url}/dicom-web/studies/{study.study_uid}"
    r = requests.get(retrieve_url, headers={"Accept": "application/zip"}, timeout=60)
    assert r.status_code == 200 and r.content[:2] == b"PK"
    metadata = requests.get(f"{retrieve_url}/metadata", timeout=30).json()
    bulk = [v["BulkDataURI"] for item in metadata for v in item.values() if "BulkDataURI" in v]
    assert bulk and all(u.startswith(f"{proxy.url}/dicom-web/studies/") for u in bulk)
    # Behind a TLS ingress: the public URL's scheme and host.
    public = start_proxy(orthanc.url, "--public-url", "https://pacs.example.org")
    found = requests.get(f"{public.url}/dicom-web/studies?StudyInstanceUID={study.study_uid}",
                         timeout=30).json()
    assert found[0]["00081190"]["Value"][0] == (
        f"https://pacs.example.org/dicom-web/studies/{study.study_uid}")


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
