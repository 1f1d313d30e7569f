"""Browser links to a protected upstream: signed, study-scoped, short-lived download links."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from conftest import Proxy, StartProxy
from zipcheck import check_all

from zipproxy.demo.orthanc import SampleUpstream

SECRET_PASSWORD = "secret"


@pytest.fixture(scope="module")
def link_proxy(orthanc_auth: SampleUpstream, start_proxy: StartProxy) -> Proxy:
    return start_proxy(
        orthanc_auth.url, "--link-secret", "test-link-secret", "--link-ttl", "300",
        "--upstream-auth", f"alice:{SECRET_PASSWORD}",
    )


def test_signed_link_downloads_without_credentials(link_proxy: Proxy,
                                                   orthanc_auth: SampleUpstream,
                                                   tmp_path: Path) -> None:
    study = orthanc_auth.studies[1]
    path = f"/dicom-web/studies/{study.study_uid}"
    # Without credentials the proxy will not mint a link: the upstream says 401.
    r = requests.post(f"{link_proxy.url}/-/links", json={"path": path}, timeout=30)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    r = requests.post(f"{link_proxy.url}/-/links", json={"path": path},
                      auth=("alice", SECRET_PASSWORD), timeout=30)
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert url.startswith(f"{link_proxy.url}{path}?accept=application/zip&zp-link=")
    # The link alone (a browser click: no Authorization header) gets the ZIP.
    out = tmp_path / "linked.zip"
    with requests.get(url, timeout=60, stream=True) as got:
        assert got.status_code == 200, got.text
        out.write_bytes(got.content)
    info = check_all(out)
    assert {rec.sop_instance_uid for rec in info.records} == set(study.sop_uids)
    # The token opens only that study, and only untampered.
    other = orthanc_auth.studies[0].study_uid
    token = url.split("zp-link=")[1]
    r = requests.get(f"{link_proxy.url}/dicom-web/studies/{other}?accept=application/zip"
                     f"&zp-link={token}", timeout=30)
    assert r.status_code == 403
    r = requests.get(url[:-2] + ("AA" if not url.endswith("AA") else "BB"), timeout=30)
    assert r.status_code == 403
    # Tokens and passwords never reach the logs.
    log = link_proxy.log()
    assert token not in log and SECRET_PASSWORD not in log and "zp-link" not in log


def test_unknown_study_and_bad_requests(link_proxy: Proxy) -> None:
    auth = ("alice", SECRET_PASSWORD)
    r = requests.post(f"{link_proxy.url}/-/links", json={"path": "/dicom-web/studies/1.2.3.4"},
                      auth=auth, timeout=30)
    assert r.status_code == 404
    r = requests.post(f"{link_proxy.url}/-/links", data=b"not json", auth=auth, timeout=30)
    assert r.status_code == 400
    r = requests.post(f"{link_proxy.url}/-/links", json={"path": "/dicom-web/studies/x"},
                      auth=auth, timeout=30)
    assert r.status_code == 400


def test_links_disabled_without_secret(proxy: Proxy) -> None:
    r = requests.post(f"{proxy.url}/-/links", json={"path": "/dicom-web/studies/1.2"}, timeout=30)
    assert r.status_code == 403 and "not enabled" in r.text


def test_links_behind_an_ingress_start_with_the_public_url(
    orthanc_auth: SampleUpstream, start_proxy: StartProxy
) -> None:
    """Behind a TLS ingress that maps https://pacs.example.org/zip to the proxy, the link must be
    the public one; the path after the prefix is what the proxy verifies."""
    public = "https://pacs.example.org/zip"
    proxy = start_proxy(orthanc_auth.url, "--link-secret", "test-link-secret",
                        "--upstream-auth", f"alice:{SECRET_PASSWORD}", "--public-url", public + "/")
    path = f"/dicom-web/studies/{orthanc_auth.studies[0].study_uid}"
    r = requests.post(f"{proxy.url}/-/links", json={"path": path},
                      auth=("alice", SECRET_PASSWORD), timeout=30)
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    assert url.startswith(f"{public}{path}?accept=application/zip&zp-link=")
    # What the ingress forwards (the prefix stripped) opens the ZIP.
    r = requests.get(proxy.url + url.removeprefix(public), timeout=60)
    assert r.status_code == 200 and r.content[:2] == b"PK"
