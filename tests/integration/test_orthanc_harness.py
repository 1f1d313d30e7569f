"""The real-parts harness: sample studies, the Orthanc fixtures, the STOW loader.

Also pins the Orthanc 1.10 facts that zipproxy relies on (notes/orthanc.md), so that an Orthanc
upgrade that changes them fails here first.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from requests_toolbelt.multipart.decoder import MultipartDecoder
from zipcheck import expected_instances_match

from zipproxy.demo.orthanc import Orthanc, SampleUpstream
from zipproxy.demo.samples import StudyInfo, make_bulk_study, make_samples, make_study

DICOM_JSON = {"Accept": "application/dicom+json"}
MULTIPART_STAR = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


def retrieve(
    url: str, auth: tuple[str, str] | None = None, star: bool = True
) -> tuple[requests.Response, list[bytes]]:
    response = requests.get(url, headers=MULTIPART_STAR if star else {}, auth=auth, timeout=60)
    assert response.status_code == 200, response.text[:500]
    decoder = MultipartDecoder.from_response(response)
    bodies = []
    for part in decoder.parts:
        assert part.headers[b"Content-Type"] == b"application/dicom"
        bodies.append(part.content)
    return response, bodies


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parts_to_zip(bodies: list[bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for n, body in enumerate(bodies):
            zf.writestr(f"IM{n}", body)
    return path


def qido(base: str, path: str, auth: tuple[str, str] | None = None, **params: str) -> Any:
    response = requests.get(base + path, params=params, headers=DICOM_JSON, auth=auth, timeout=60)
    assert response.status_code == 200, response.text[:500]
    return response.json() if response.content else []


def value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value", [])
    return values[0] if values else None


# -- samples --------------------------------------------------------------------------------


def test_samples_are_deterministic(tmp_path: Path) -> None:
    first = make_samples(tmp_path / "a")
    second = make_samples(tmp_path / "b")
    assert [s.study_uid for s in first] == [s.study_uid for s in second]
    for a, b in zip(first, second, strict=True):
        assert [sha(p.read_bytes()) for p in a.files] == [sha(p.read_bytes()) for p in b.files]
    uids = [i.sop_uid for s in first for i in s.instances]
    assert len(uids) == len(set(uids)) == 25
    ct, muller, yamada, mixed, nokeys = first
    assert len(ct.series_uids) == 2 and len(ct.instances) == 10
    assert mixed.modalities == ["CT", "XA", "SR", "KO", "DOC"]
    xa = pydicom.dcmread(mixed.instances[2].path)
    assert xa.NumberOfFrames == 10
    assert len(xa.PixelData) == 64 * 64 * 2 * 10
    pdf = pydicom.dcmread(mixed.instances[-1].path)
    assert pdf.EncapsulatedDocument.startswith(b"%PDF-")
    jp = pydicom.dcmread(yamada.files[0])
    assert str(jp.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert pydicom.dcmread(muller.files[0]).PatientName == "Müller^Jürgen"
    for path in nokeys.files:
        ds = pydicom.dcmread(path)
        assert ds.PatientID == "" and "StudyID" not in ds
        assert not ds.get("SeriesNumber") and not ds.get("InstanceNumber")
    for study in first:
        for path in study.files:
            assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_bulk_study(tmp_path: Path) -> None:
    info = make_bulk_study(tmp_path, n_series=2, per_series=3, rows=16, cols=16, frames=2)
    assert len(info.series_uids) == 2 and len(info.instances) == 6
    assert len(set(info.sop_uids)) == 6
    ds = pydicom.dcmread(info.files[-1])
    assert ds.SOPInstanceUID == info.instances[-1].sop_uid
    assert ds.StudyInstanceUID == info.study_uid
    assert len(ds.PixelData) == 16 * 16 * 2 * 2
    assert ds.InstanceNumber == 3 and ds.SeriesNumber == 2


# -- the session fixture --------------------------------------------------------------------


def test_qido_finds_every_sample_study(orthanc: SampleUpstream) -> None:
    studies = qido(orthanc.dicomweb, "/studies")
    assert {value(s, "0020000D") for s in studies} == {s.study_uid for s in orthanc.studies}
    for info in orthanc.studies:
        (found,) = qido(
            orthanc.dicomweb,
            "/studies",
            StudyInstanceUID=info.study_uid,
            includefield="00081030",
        )
        name = value(found, "00100010")
        groups = info.patient_name.split("=")
        assert name["Alphabetic"] == groups[0]
        if len(groups) > 1:  # DefaultEncoding Utf8 keeps the CJK groups
            assert name["Ideographic"] == groups[1]
            assert name["Phonetic"] == groups[2]
        assert (value(found, "00100020") or "") == info.patient_id
        assert value(found, "00081030") == info.study_description
        series = qido(orthanc.dicomweb, f"/studies/{info.study_uid}/series")
        assert {value(s, "0020000E") for s in series} == set(info.series_uids)
        instances = qido(orthanc.dicomweb, f"/studies/{info.study_uid}/instances")
        assert {value(i, "00080018") for i in instances} == set(info.sop_uids)


@pytest.mark.parametrize("star", [True, False], ids=["transfer-syntax=*", "default"])
def test_wado_retrieve_returns_the_uploaded_files(orthanc: SampleUpstream, star: bool) -> None:
    for info in orthanc.studies:
        response, bodies = retrieve(f"{orthanc.dicomweb}/studies/{info.study_uid}", star=star)
        # Facts zipproxy depends on (notes/orthanc.md)
        content_type = response.headers["Content-Type"]
        assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
        assert "Content-Length" not in response.headers
        assert "Transfer-Encoding" not in response.headers
        assert response.headers.get("Connection", "").lower() == "close"
        # Stored as Explicit VR LE, so even the default (transcoding) answer is byte-identical.
        assert sorted(map(sha, bodies)) == sorted(sha(p.read_bytes()) for p in info.files)

    mixed = orthanc.study("ZP-MIX-001")
    series_uid = mixed.series_uids[1]
    _, bodies = retrieve(f"{orthanc.dicomweb}/studies/{mixed.study_uid}/series/{series_uid}")
    want = [sha(i.path.read_bytes()) for i in mixed.series_instances(series_uid)]
    assert sorted(map(sha, bodies)) == sorted(want)
    inst = mixed.instances[-1]
    _, bodies = retrieve(
        f"{orthanc.dicomweb}/studies/{mixed.study_uid}/series/{inst.series_uid}"
        f"/instances/{inst.sop_uid}"
    )
    assert bodies == [inst.path.read_bytes()]


def test_retrieve_matches_with_expected_instances_match(
    orthanc: SampleUpstream, tmp_path: Path
) -> None:
    for n, info in enumerate(orthanc.studies):
        _, bodies = retrieve(f"{orthanc.dicomweb}/studies/{info.study_uid}")
        path = parts_to_zip(bodies, tmp_path / f"s{n}.zip")
        assert set(expected_instances_match(path, info)) == set(info.sop_uids)
        expected_instances_match(path, info, transfer_syntax_star=False)


def test_unknown_study_is_404(orthanc: SampleUpstream) -> None:
    response = requests.get(f"{orthanc.dicomweb}/studies/1.2.3.4.5", timeout=30)
    assert response.status_code == 404


def test_auth_fixture(orthanc_auth: SampleUpstream) -> None:
    assert orthanc_auth.auth == ("alice", "secret")
    response = requests.get(f"{orthanc_auth.dicomweb}/studies", headers=DICOM_JSON, timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = requests.get(f"{orthanc_auth.dicomweb}/studies", auth=("alice", "wrong"), timeout=30)
    assert wrong.status_code == 401
    studies = qido(orthanc_auth.dicomweb, "/studies", auth=orthanc_auth.auth)
    assert {value(s, "0020000D") for s in studies} == {s.study_uid for s in orthanc_auth.studies}
    info = orthanc_auth.studies[1]
    _, bodies = retrieve(f"{orthanc_auth.dicomweb}/studies/{info.study_uid}", orthanc_auth.auth)
    assert sorted(map(sha, bodies)) == sorted(sha(p.read_bytes()) for p in info.files)


# -- STOW loader and a private Orthanc ------------------------------------------------------


def _reencoded(info: StudyInfo, out: Path) -> list[Path]:
    """Copies of the study's first two instances re-encoded as Implicit VR LE and Deflated."""
    paths = []
    for inst, ts in zip(
        info.instances[:2], [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian], strict=True
    ):
        ds = pydicom.dcmread(inst.path)
        ds.file_meta.TransferSyntaxUID = ts
        path = out / f"{ts.name.replace(' ', '_')}.dcm"
        pydicom.dcmwrite(
            path, ds, enforce_file_format=True, implicit_vr=ts == ImplicitVRLittleEndian
        )
        paths.append(path)
    return paths


def test_stow_loader_and_orthanc_lifecycle(tmp_path: Path) -> None:
    study = make_study(
        tmp_path / "samples",
        patient_name="Stow^Sam",
        patient_id="ZP-STOW-001",
        series=[("CT", 3, 16, 16, 1), ("SR", 1, 0, 0, 0)],
        study_description="STOW test",
    )
    other = make_study(
        tmp_path / "samples",
        patient_name="Ts^Tina",
        patient_id="ZP-TS-001",
        series=[("MR", 2, 16, 16, 1)],
        study_description="Transfer syntaxes",
    )
    reencoded = _reencoded(other, tmp_path)
    server = Orthanc(tmp_path / "orthanc", users={"bob": "pw"})
    with server:
        pid = server.pid
        assert pid is not None and server.url.startswith("http://127.0.0.1:")
        answer = server.stow(study.files)
        stored = [value(item, "00081155") for item in answer["00081199"]["Value"]]
        assert sorted(stored) == sorted(study.sop_uids)
        answer = server.stow(reencoded, study_uid=other.study_uid)  # bytes or paths
        assert len(answer["00081199"]["Value"]) == 2
        for info in (study,):
            _, bodies = retrieve(f"{server.dicomweb}/studies/{info.study_uid}", server.auth)
            expected_instances_match(parts_to_zip(bodies, tmp_path / "a.zip"), info)

        # transfer-syntax=*: as stored, byte-identical to what was uploaded
        _, bodies = retrieve(f"{server.dicomweb}/studies/{other.study_uid}", server.auth)
        stored_zip = parts_to_zip(bodies, tmp_path / "star.zip")
        expected_instances_match(stored_zip, reencoded)
        # default: transcoded to Explicit VR LE; same data set, other bytes
        _, bodies = retrieve(f"{server.dicomweb}/studies/{other.study_uid}", server.auth, False)
        for body in bodies:
            ds = pydicom.dcmread(io.BytesIO(body))
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        default_zip = parts_to_zip(bodies, tmp_path / "default.zip")
        expected_instances_match(default_zip, reencoded, transfer_syntax_star=False)
        with pytest.raises(AssertionError, match="bytes differ"):
            expected_instances_match(default_zip, reencoded)

        # raw POST /instances upload (bytes or paths); same SOP Instance UID -> AlreadyStored
        answers = server.upload([other.files[0].read_bytes(), other.files[1]])
        assert [a["Status"] for a in answers] == ["AlreadyStored", "AlreadyStored"]
        fresh = make_study(
            tmp_path / "samples",
            patient_name="New^Ned",
            patient_id="ZP-NEW",
            series=[("OT", 2, 8, 8, 1)],
        )
        assert [a["Status"] for a in server.upload(fresh.files)] == ["Success", "Success"]
    assert server.process is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/system", timeout=5)
