"""Core: DICOM ZIPs of studies, series and instances from a real Orthanc, through a real proxy.

Every ZIP is downloaded with curl (a real client) and passes every reader in ``zipcheck``.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import Proxy, StartProxy
from zipcheck import check_all, expected_instances_match

from zipproxy.demo.orthanc import SampleUpstream

ZIP = "application/zip"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def curl(url: str, out: Path, *headers: str) -> dict[str, str]:
    """Download with curl; return the response headers (lower-cased names). ``headers``
    starting with ``--`` are curl options."""
    args = ["curl", "-sS", "--fail-with-body", "-o", str(out), "-D", "-", url]
    for h in headers:
        args += [h] if h.startswith("--") else ["-H", h]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr, out.read_bytes()[:500])
    found = {}
    for line in proc.stdout.splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def test_study_zip_from_accept_header(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    study = (
        orthanc.study("DOE-0001")
        if any(s.patient_id == "DOE-0001" for s in orthanc.studies)
        else orthanc.studies[0]
    )
    out = tmp_path / "study.zip"
    headers = curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}", out, f"Accept: {ZIP}")
    assert headers["content-type"] == ZIP
    assert headers["content-disposition"] == f'attachment; filename="study-{study.study_uid}.zip"'
    info = check_all(out)
    assert len(info.records) == len(study.instances)
    # Without transfer-syntax the upstream default applies (Explicit VR Little Endian).
    expected_instances_match(out, study, transfer_syntax_star=False)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert names[0] == "README.TXT" and names[-1] == "DICOMDIR"


@pytest.mark.parametrize("index", range(5))
def test_every_sample_study_as_stored(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path, index: int
) -> None:
    """transfer-syntax=*: every entry byte-identical to what was uploaded; DICOMDIR valid."""
    study = orthanc.studies[index]
    out = tmp_path / "s.zip"
    curl(
        f"{proxy.url}/dicom-web/studies/{study.study_uid}", out, f"Accept: {ZIP}; transfer-syntax=*"
    )
    info = check_all(out)
    expected_instances_match(out, study, transfer_syntax_star=True)
    assert {r.sop_instance_uid for r in info.records} == set(study.sop_uids)
    # Names survive intact, in the source's character set (Orthanc's /media strips them).
    assert {str(p.PatientName) for p in info.patients} == {study.patient_name}


def test_series_zip_from_browser_link(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    study = orthanc.studies[0]
    series = study.series_uids[1]
    out = tmp_path / "series.zip"
    headers = curl(
        f"{proxy.url}/dicom-web/studies/{study.study_uid}/series/{series}?accept=application/zip",
        out,
        "Accept: */*",
    )
    assert headers["content-disposition"].endswith(f'filename="series-{series}.zip"')
    info = check_all(out)
    assert {r.sop_instance_uid for r in info.records} == {
        i.sop_uid for i in study.series_instances(series)
    }


def test_instance_zip(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    inst = orthanc.studies[3].instances[-1]
    out = tmp_path / "instance.zip"
    curl(
        f"{proxy.url}/dicom-web/studies/{orthanc.studies[3].study_uid}/series/{inst.series_uid}"
        f"/instances/{inst.sop_uid}?accept=application/zip",
        out,
    )
    info = check_all(out)
    assert [r.sop_instance_uid for r in info.records] == [inst.sop_uid]
    expected_instances_match(out, [inst.path], transfer_syntax_star=False)


def test_transcoded_to_jpeg_lossless(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    study = orthanc.studies[0]  # CT images only
    out = tmp_path / "jpeg.zip"
    curl(
        f"{proxy.url}/dicom-web/studies/{study.study_uid}",
        out,
        f"Accept: {ZIP}; transfer-syntax={JPEG_LOSSLESS_SV1}",
    )
    info = check_all(out)
    assert {r.transfer_syntax_uid for r in info.records} == {JPEG_LOSSLESS_SV1}


def test_type1_keys_supplied(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    study = orthanc.study("")
    out = tmp_path / "nokeys.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}?accept=application/zip", out)
    info = check_all(out)  # dciodvfy and the record-key checks pass despite the missing keys
    (patient,) = info.patients
    assert patient.PatientID
    (st,) = info.studies
    assert st.StudyID and st.StudyDate and st.StudyTime
    assert all(s.SeriesNumber is not None and str(s.SeriesNumber) != "" for s in info.series)


def test_upstream_404_passes_through(proxy: Proxy) -> None:
    r = requests.get(
        f"{proxy.url}/dicom-web/studies/1.2.3.4.5", headers={"Accept": ZIP}, timeout=30
    )
    assert r.status_code == 404
    assert r.headers.get("Content-Type") != ZIP


def test_upstream_401_passes_through_with_challenge(
    proxy_auth: Proxy, orthanc_auth: SampleUpstream, tmp_path: Path
) -> None:
    url = f"{proxy_auth.url}/dicom-web/studies/{orthanc_auth.studies[0].study_uid}"
    r = requests.get(url + "?accept=application/zip", timeout=30)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    out = tmp_path / "auth.zip"
    curl(url + "?accept=application/zip", out, "Authorization: Basic YWxpY2U6c2VjcmV0")
    check_all(out)


def test_bad_uid_is_400_without_asking_upstream(proxy: Proxy) -> None:
    for bad in ("..%2F..", "1.2.abc", "1." * 100 + "1"):
        r = requests.get(f"{proxy.url}/dicom-web/studies/{bad}?accept=application/zip", timeout=30)
        assert r.status_code == 400, bad
        assert "not a valid UID" in r.text


def test_not_acceptable_and_bad_requests(proxy: Proxy, orthanc: SampleUpstream) -> None:
    url = f"{proxy.url}/dicom-web/studies/{orthanc.studies[0].study_uid}"
    r = requests.get(url, headers={"Accept": "application/zip; transfer-syntax=1.2.x"}, timeout=30)
    assert r.status_code == 400 and "transfer-syntax" in r.text
    r = requests.get(url + "?accept=application/zip,image/jpeg", timeout=30)
    assert r.status_code == 400
    r = requests.get(url + "?accept=application/zip", headers={"Accept": "text/html"}, timeout=30)
    assert r.status_code == 406


def test_unencoded_plus_in_an_accept_link(proxy: Proxy, orthanc: SampleUpstream) -> None:
    """``application/dicom+json`` typed into a link keeps its "+" (not a form-encoded space)."""
    url = f"{proxy.url}/dicom-web/studies/{orthanc.studies[0].study_uid}"
    # requests would encode "+" as %2B: curl sends the link byte for byte, as a browser does.
    link = url + "?accept=application/dicom+json;q=0.5,application/zip;+transfer-syntax=*"
    run = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{content_type}",
                          link], capture_output=True, text=True, timeout=60)
    assert run.stdout == "200 application/zip", run.stdout


@pytest.mark.parametrize("manifest", ["", "&manifest=sha256"])
def test_manifest_rows_match_the_entries(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path, manifest: str
) -> None:
    """Every row's CRC-32 (and SHA-256, when asked for) is that of its entry's data."""
    import csv
    import hashlib
    import io
    import zlib

    study = orthanc.studies[3]  # images, multi-frame, SR, KO, PDF
    out = tmp_path / "m.zip"
    curl(
        f"{proxy.url}/dicom-web/studies/{study.study_uid}?accept=application/zip{manifest}",
        out,
    )
    info = check_all(out)
    with zipfile.ZipFile(out) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode())))
        assert len(rows) == len(study.instances)
        assert ("sha256" in rows[0]) == bool(manifest)
        by_sop = {r.sop_instance_uid: r for r in info.records}
        for row in rows:
            data = zf.read(row["path"])
            assert row["crc32"] == f"{zlib.crc32(data):08x}"
            assert row.get("sha256", "-") == (hashlib.sha256(data).hexdigest() if manifest
                                              else "-")
            assert int(row["size"]) == len(data)
            record = by_sop[row["SOPInstanceUID"]]
            assert record.file_id == row["path"]
            assert row["StudyInstanceUID"] == study.study_uid
            assert row["PatientID"] == study.patient_id
    frames = {r["NumberOfFrames"] for r in rows}
    assert "10" in frames  # the multi-frame XA


def test_manifest_can_be_turned_off(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    study = orthanc.studies[0]
    out = tmp_path / "nm.zip"
    curl(
        f"{proxy.url}/dicom-web/studies/{study.study_uid}?accept=application/zip&manifest=false",
        out,
    )
    check_all(out)
    with zipfile.ZipFile(out) as zf:
        assert "MANIFEST.CSV" not in zf.namelist()
    r = requests.get(
        f"{proxy.url}/dicom-web/studies/{study.study_uid}?accept=application/zip&manifest=maybe",
        timeout=30,
    )
    assert r.status_code == 400


@pytest.fixture(scope="module")
def streaming_proxy(orthanc: SampleUpstream, start_proxy: StartProxy) -> Proxy:
    """Every instance above 4 KiB streams (DEFLATE stored blocks + data descriptor)."""
    return start_proxy(orthanc.url, "--hold-limit", "4K")


@pytest.mark.parametrize("index", [0, 3])
def test_streamed_entries_pass_every_reader(
    streaming_proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path, index: int
) -> None:
    study = orthanc.studies[index]
    out = tmp_path / "streamed.zip"
    curl(
        f"{streaming_proxy.url}/dicom-web/studies/{study.study_uid}",
        out,
        f"Accept: {ZIP}; transfer-syntax=*",
    )
    check_all(out)  # Java's ZipInputStream and bsdtar from a pipe read it front to back
    expected_instances_match(out, study, transfer_syntax_star=True)
    with zipfile.ZipFile(out) as zf:
        for info in zf.infolist():
            if info.filename.startswith("DICOM/"):
                big = info.file_size > 4096
                assert info.compress_type == (zipfile.ZIP_DEFLATED if big else zipfile.ZIP_STORED)


@pytest.mark.parametrize("public_url", ["", "https://pacs.example.org/dicom"])
def test_readme_names_the_public_address_never_the_upstream(
    orthanc: SampleUpstream, start_proxy: StartProxy, tmp_path: Path, public_url: str
) -> None:
    """README.TXT tells a patient where the ZIP came from: the proxy's public URL (or the
    address the request used), not the internal upstream (issue 13)."""
    proxy = start_proxy(orthanc.url, *(["--public-url", public_url] if public_url else []))
    study = orthanc.studies[3]
    out = tmp_path / "r.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}?accept=application/zip", out)
    check_all(out)
    internal = orthanc.url.removeprefix("http://").encode()  # 127.0.0.1:PORT
    with zipfile.ZipFile(out) as zf:
        readme = zf.read("README.TXT").decode()
        assert f"Source server:   {public_url or proxy.url}\r\n" in readme
        assert internal not in zf.comment
        for info in zf.infolist():
            assert internal not in zf.read(info), info.filename


@pytest.mark.parametrize("version", ["--http1.1", "--http1.0"])
def test_chunked_and_close_delimited_answers(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path, version: str
) -> None:
    """The body writer frames HTTP/1.1 chunks itself (RFC 9112 7.1); an HTTP/1.0 client gets
    the same bytes unframed, delimited by the close."""
    study = orthanc.studies[3]
    out = tmp_path / "v.zip"
    headers = curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}?accept=application/zip",
                   out, version)
    assert headers.get("transfer-encoding") == ("chunked" if version == "--http1.1" else None)
    check_all(out)
