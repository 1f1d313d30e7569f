"""Encrypted (AES-256, WinZip AE-2) DICOM ZIPs asked for at retrieval time."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import Proxy, StartProxy
from test_zip_core import curl

from zipproxy.demo.orthanc import SampleUpstream

PASSWORD = "Tr0ub4dor&3 ünïcode"


def seven_zip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["7zz", *args], capture_output=True, text=True, check=False,
                          timeout=120)


def test_encrypted_study_opens_with_7zip_and_its_password(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    study = orthanc.studies[3]  # images, multi-frame, SR, KO, PDF
    out = tmp_path / "enc.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}", out,
         f'Accept: application/zip; transfer-syntax=*; password="{PASSWORD}"')
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
        assert infos[0].filename == "README.TXT" and not infos[0].flag_bits & 1
        assert b"AES-256" in zf.read("README.TXT")
        assert all(i.flag_bits & 1 and i.compress_type == 99 for i in infos[1:])
    tested = seven_zip("t", f"-p{PASSWORD}", str(out))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    dest = tmp_path / "x"
    done = seven_zip("x", f"-p{PASSWORD}", f"-o{dest}", str(out))
    assert done.returncode == 0, done.stdout
    # AE-2 has no CRC: compare the bytes, not just "7zz t".
    originals = {i.sop_uid: i.path.read_bytes() for i in study.instances}
    extracted = sorted((dest / "DICOM").rglob("IM*"))
    assert len(extracted) == len(originals)
    assert sorted(p.read_bytes() for p in extracted) == sorted(originals.values())
    assert (dest / "DICOMDIR").read_bytes()[128:132] == b"DICM"
    wrong = seven_zip("t", "-pnot the password", str(out))
    assert wrong.returncode != 0
    listed = subprocess.run(["unzip", "-l", str(out)], capture_output=True, text=True,
                            check=False)
    assert listed.returncode == 0 and "DICOMDIR" in listed.stdout
    assert PASSWORD not in proxy.log()


def test_without_password_nothing_is_encrypted(proxy: Proxy, orthanc: SampleUpstream,
                                               tmp_path: Path) -> None:
    out = tmp_path / "plain.zip"
    curl(f"{proxy.url}/dicom-web/studies/{orthanc.studies[0].study_uid}", out,
         "Accept: application/zip")
    with zipfile.ZipFile(out) as zf:
        assert not any(i.flag_bits & 1 for i in zf.infolist())


def test_password_rules(proxy: Proxy, orthanc: SampleUpstream) -> None:
    url = f"{proxy.url}/dicom-web/studies/{orthanc.studies[0].study_uid}"
    r = requests.get(url, headers={"Accept": 'application/zip; password="short"'}, timeout=30)
    assert r.status_code == 400 and "too short" in r.text and "short\"" not in r.text
    r = requests.get(url + f"?accept=application/zip&password={PASSWORD}", timeout=30)
    assert r.status_code == 400 and "disabled" in r.text and PASSWORD not in r.text
    assert PASSWORD not in proxy.log()


@pytest.fixture(scope="module")
def query_proxy(orthanc: SampleUpstream, start_proxy: StartProxy) -> Proxy:
    return start_proxy(orthanc.url, "--password-query", "true")


def test_password_query_when_enabled(query_proxy: Proxy, orthanc: SampleUpstream,
                                     tmp_path: Path) -> None:
    from urllib.parse import quote

    out = tmp_path / "q.zip"
    curl(f"{query_proxy.url}/dicom-web/studies/{orthanc.studies[1].study_uid}"
         f"?accept=application/zip&password={quote(PASSWORD)}", out)
    assert seven_zip("t", f"-p{PASSWORD}", str(out)).returncode == 0
    assert seven_zip("t", "-pwrongwrong", str(out)).returncode != 0
    assert PASSWORD not in query_proxy.log() and quote(PASSWORD) not in query_proxy.log()
