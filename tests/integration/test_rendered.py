"""Rendered ZIPs (``…/rendered?accept=application/zip``) from a real Orthanc, through a real proxy.

Every image is decoded with Pillow and checked against its instance's Rows x Columns; every
MANIFEST.CSV row against the entry it names (size, SHA-256) or the upstream's own answer.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pydicom
import requests
from conftest import Proxy
from PIL import Image
from test_zip_core import curl

from zipproxy.demo.content import BASIC_TEXT_SR, ENCAPSULATED_PDF, KEY_OBJECT_SELECTION, XA_IMAGE
from zipproxy.demo.orthanc import SampleUpstream
from zipproxy.demo.samples import SampleInstance, StudyInfo
from zipproxy.rendered import COLUMNS

ZIP = "application/zip"


def _mixed(orthanc: SampleUpstream) -> StudyInfo:
    return orthanc.study("ZP-MIX-001")  # CT x 2, XA 10 frames, SR, KO, PDF


def _open(path: Path) -> tuple[zipfile.ZipFile, list[dict[str, str]]]:
    """The ZIP, checked whole (CRCs; Info-ZIP too when installed), and its manifest rows."""
    zf = zipfile.ZipFile(path)
    assert zf.testzip() is None
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-tqq", str(path)], check=True, timeout=60)
    names = zf.namelist()
    assert names[0] == "README.TXT" and names[-1] == "MANIFEST.CSV"
    assert "DICOMDIR" not in names
    text = zf.read("MANIFEST.CSV").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.split("\r\n", 1)[0] == ",".join(COLUMNS)
    # Every entry but README/MANIFEST is in the manifest, with the right size and SHA-256.
    assert sorted(r["path"] for r in rows if r["path"]) == sorted(names[1:-1])
    for row in rows:
        if row["path"]:
            data = zf.read(row["path"])
            assert row["sha256"] == hashlib.sha256(data).hexdigest(), row
            assert row["size"] == str(len(data)) and row["status"] == "200" and not row["error"]
    return zf, rows


def _size(inst: SampleInstance) -> tuple[int, int]:
    ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
    return int(ds.Columns), int(ds.Rows)


def _decode(zf: zipfile.ZipFile, name: str, fmt: str) -> Image.Image:
    image = Image.open(io.BytesIO(zf.read(name)))
    image.load()  # decodes every pixel: a truncated image fails here
    assert image.format == fmt
    return image


def test_ct_series_one_png_per_instance(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    study = orthanc.studies[0]
    series = study.series_uids[0]
    out = tmp_path / "ct.zip"
    headers = curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}/series/{series}/rendered"
                   f"?accept={ZIP}", out, "Accept: */*")
    assert headers["content-type"] == ZIP
    assert headers["content-disposition"] == f'attachment; filename="rendered-series-{series}.zip"'
    zf, rows = _open(out)
    instances = {i.sop_uid: i for i in study.series_instances(series)}
    assert len(rows) == len(instances) == 5
    # In instance-number order, whatever order Orthanc's QIDO answered in.
    numbers = [pydicom.dcmread(instances[r["SOPInstanceUID"]].path).InstanceNumber for r in rows]
    assert numbers == sorted(numbers)
    for n, row in enumerate(rows, 1):
        assert row["path"] == f"IMAGES/ST000001/SE000001/IM{n:06d}.png"
        assert (row["StudyInstanceUID"], row["SeriesInstanceUID"]) == (study.study_uid, series)
        inst = instances[row["SOPInstanceUID"]]
        assert row["SOPClassUID"] == inst.sop_class_uid and row["frame"] == ""
        assert row["media_type"] == "image/png"
        assert _decode(zf, row["path"], "PNG").size == _size(inst)
    readme = zf.read("README.TXT").decode("ascii")
    assert series in readme and study.patient_name not in readme


def test_multiframe_xa_one_png_per_frame(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    study = _mixed(orthanc)
    (xa,) = [i for i in study.instances if i.sop_class_uid == XA_IMAGE]
    out = tmp_path / "xa.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}/series/{xa.series_uid}/rendered",
         out, f"Accept: {ZIP}")
    zf, rows = _open(out)
    assert [r["frame"] for r in rows] == [str(n) for n in range(1, 11)]
    assert [r["path"] for r in rows] == [
        f"IMAGES/ST000001/SE000001/IM000001_F{n:04d}.png" for n in range(1, 11)]
    assert {r["SOPInstanceUID"] for r in rows} == {xa.sop_uid}
    for row in rows:
        assert _decode(zf, row["path"], "PNG").size == _size(xa) == (64, 64)


def test_jpeg_with_type_parameter(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    study = orthanc.studies[1]  # MR x 3
    out = tmp_path / "mr.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}/rendered"
         f"?accept={ZIP}&type=image/jpeg", out)
    zf, rows = _open(out)
    assert len(rows) == 3 and {r["media_type"] for r in rows} == {"image/jpeg"}
    by_uid = study.by_sop_uid()
    for row in rows:
        assert row["path"].endswith(".jpg")
        assert _decode(zf, row["path"], "JPEG").size == _size(by_uid[row["SOPInstanceUID"]])


def test_unrenderable_instances_are_manifest_rows(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """SR, KO and PDF: Orthanc refuses to render them; the ZIP holds the rest and says why."""
    study = _mixed(orthanc)
    out = tmp_path / "mixed.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}/rendered?accept={ZIP}", out)
    zf, rows = _open(out)
    assert {r["SOPInstanceUID"] for r in rows} == set(study.sop_uids)
    assert len(rows) == 2 + 10 + 3  # CT x 2, 10 XA frames, SR, KO, PDF
    assert len(zf.namelist()) == 2 + 12
    failed = [r for r in rows if not r["path"]]
    by_uid = study.by_sop_uid()
    assert sorted(r["SOPClassUID"] for r in failed) == sorted(
        [BASIC_TEXT_SR, KEY_OBJECT_SELECTION, ENCAPSULATED_PDF])
    for row in failed:
        inst = by_uid[row["SOPInstanceUID"]]
        direct = requests.get(
            f"{orthanc.dicomweb}/studies/{study.study_uid}/series/{inst.series_uid}"
            f"/instances/{inst.sop_uid}/rendered", headers={"Accept": "image/png"}, timeout=30)
        assert direct.status_code >= 400
        assert row["status"] == str(direct.status_code), row
        assert row["error"].startswith(f"upstream answered {direct.status_code}")
        assert row["size"] == row["sha256"] == ""
    assert zf.comment == b"zipproxy rendered ZIP: 12 images, 3 not rendered"


def test_rendering_parameters_are_forwarded(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    study = orthanc.studies[0]
    out = tmp_path / "small.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}/series/{study.series_uids[1]}/rendered"
         f"?accept={ZIP}&viewport=16,16", out)
    zf, rows = _open(out)
    assert {_decode(zf, r["path"], "PNG").size for r in rows} == {(16, 16)}


def test_errors_before_any_zip_byte(proxy: Proxy, orthanc: SampleUpstream) -> None:
    study = orthanc.studies[0]
    base = f"{proxy.url}/dicom-web/studies"
    r = requests.get(f"{base}/1.2.3.4.5/rendered?accept={ZIP}", timeout=30)
    assert r.status_code == 404 and "no instances" in r.text
    r = requests.get(f"{base}/{study.study_uid}/series/1.2.3/rendered?accept={ZIP}", timeout=30)
    assert r.status_code == 404
    r = requests.get(f"{base}/{study.study_uid}/rendered?accept={ZIP}&type=image/gif", timeout=30)
    assert r.status_code == 400 and "image/png" in r.text and "image/jpeg" in r.text
    # PS3.18 8.3.3.1: no zip and image types in one accept parameter; hence the type parameter.
    r = requests.get(f"{base}/{study.study_uid}/rendered?accept={ZIP},image/png", timeout=30)
    assert r.status_code == 400 and "8.3.3.1" in r.text


def test_head_and_pass_through(proxy: Proxy, orthanc: SampleUpstream) -> None:
    study = orthanc.studies[0]
    series = f"{proxy.url}/dicom-web/studies/{study.study_uid}/series/{study.series_uids[0]}"
    head = requests.head(f"{series}/rendered?accept={ZIP}", timeout=30)
    assert head.status_code == 200 and head.headers["Content-Type"] == ZIP
    # Without zip the upstream's own rendered resource answers, unchanged.
    plain = requests.get(f"{series}/rendered", headers={"Accept": "image/png"}, timeout=30)
    assert plain.status_code == 200 and plain.headers["Content-Type"] == "image/png"


def test_client_credentials_are_used(
    proxy_auth: Proxy, orthanc_auth: SampleUpstream, tmp_path: Path
) -> None:
    study = orthanc_auth.studies[0]
    url = f"{proxy_auth.url}/dicom-web/studies/{study.study_uid}/rendered?accept={ZIP}"
    refused = requests.get(url, timeout=30)
    assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
    with requests.get(url, auth=orthanc_auth.auth, timeout=60) as r:
        assert r.status_code == 200, r.text
        (tmp_path / "auth.zip").write_bytes(r.content)
    _, rows = _open(tmp_path / "auth.zip")
    assert len(rows) == 10 and all(r["path"] for r in rows)


def test_manifest_is_the_index(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    """The README's loader recipe, for rendered ZIPs: keep rows with a path, check hashes."""
    study = orthanc.studies[4]
    out = tmp_path / "nokeys.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}/rendered?accept={ZIP}", out)
    zf, rows = _open(out)
    images = [r for r in rows if r["path"]]
    assert len(images) == len(study.instances) == 3
    assert all(hashlib.sha256(zf.read(r["path"])).hexdigest() == r["sha256"] for r in images)
