"""Collections: a QIDO search as one DICOM ZIP, checked against what QIDO itself lists."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import requests
from conftest import Proxy, StartProxy
from test_zip_core import curl
from zipcheck import check_all

from zipproxy.demo.orthanc import SampleUpstream


def qido_studies(orthanc: SampleUpstream, query: str) -> set[str]:
    r = requests.get(f"{orthanc.dicomweb}/studies?{query}", timeout=30)
    assert r.status_code == 200
    return {item["0020000D"]["Value"][0] for item in r.json()}


def expected_sops(orthanc: SampleUpstream, study_uids: set[str]) -> set[str]:
    return {sop for s in orthanc.studies if s.study_uid in study_uids for sop in s.sop_uids}


@pytest.mark.parametrize(
    "query",
    ["PatientID=ZP-MR-001", "StudyDate=20240101-20241231", "ModalitiesInStudy=CT", ""],
)
def test_collection_is_exactly_what_qido_lists(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path, query: str
) -> None:
    studies = qido_studies(orthanc, query)
    assert studies  # the search finds something, or the test proves nothing
    out = tmp_path / "c.zip"
    headers = curl(f"{proxy.url}/dicom-web/studies?{query}&accept=application/zip", out)
    assert headers["content-disposition"] == (f'attachment; filename="studies-{len(studies)}.zip"')
    info = check_all(out)
    assert {r.sop_instance_uid for r in info.records} == expected_sops(orthanc, studies)
    assert {s.StudyInstanceUID for s in info.studies} == studies
    patients = {s.patient_id for s in orthanc.studies if s.study_uid in studies}
    assert len(info.patients) == len(patients)
    with zipfile.ZipFile(out) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("MANIFEST.CSV").decode())))
        assert {r["StudyInstanceUID"] for r in rows} == studies
        for row in rows:
            assert f"{zlib.crc32(zf.read(row['path'])):08x}" == row["crc32"]
        folders = {name.split("/")[1] for name in zf.namelist() if name.startswith("DICOM/")}
    assert folders == {f"ST{i:06d}" for i in range(1, len(studies) + 1)}


def test_series_collection(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    study = orthanc.studies[3]  # CT, XA, SR, KO, DOC series
    r = requests.get(f"{orthanc.dicomweb}/studies/{study.study_uid}/series?Modality=CT", timeout=30)
    series = {item["0020000E"]["Value"][0] for item in r.json()}
    assert series
    out = tmp_path / "s.zip"
    curl(
        f"{proxy.url}/dicom-web/studies/{study.study_uid}/series?Modality=CT"
        "&accept=application/zip",
        out,
    )
    info = check_all(out)
    assert {s.SeriesInstanceUID for s in info.series} == series


def test_paging_passes_through(proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path) -> None:
    out = tmp_path / "p.zip"
    curl(f"{proxy.url}/dicom-web/studies?limit=2&offset=1&accept=application/zip", out)
    assert len(check_all(out).studies) == 2


@pytest.fixture(scope="module")
def small_proxy(orthanc: SampleUpstream, start_proxy: StartProxy) -> Proxy:
    return start_proxy(orthanc.url, "--max-collection", "2")


def test_limits_answer_413_before_any_byte(small_proxy: Proxy, orthanc: SampleUpstream) -> None:
    r = requests.get(f"{small_proxy.url}/dicom-web/studies?accept=application/zip", timeout=30)
    assert r.status_code == 413
    assert f"matched {len(orthanc.studies)} studies" in r.text and "at most 2" in r.text
    assert not r.content.startswith(b"PK")
    r = requests.get(
        f"{small_proxy.url}/dicom-web/studies?PatientID=NOBODY&accept=application/zip", timeout=30
    )
    assert r.status_code == 404


def test_plain_qido_still_passes_through(proxy: Proxy, orthanc: SampleUpstream) -> None:
    via = requests.get(f"{proxy.url}/dicom-web/studies?PatientID=ZP-MR-001", timeout=30)
    assert via.status_code == 200 and via.headers["Content-Type"].startswith(
        "application/dicom+json"
    )


@pytest.fixture(scope="module")
def few_instances_proxy(orthanc: SampleUpstream, start_proxy: StartProxy) -> Proxy:
    return start_proxy(orthanc.url, "--max-collection-instances", "5")


def test_instance_limit_answers_413_before_any_byte(
    few_instances_proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    ct = orthanc.study("ZP-CT-001")  # 10 instances
    r = requests.get(
        f"{few_instances_proxy.url}/dicom-web/studies?PatientID=ZP-CT-001&accept=application/zip",
        timeout=30,
    )
    assert r.status_code == 413
    assert f"matched {len(ct.instances)} instances in 1 studies" in r.text and "at most 5" in r.text
    # A search within the limit still streams (the MR study has 3 instances).
    out = tmp_path / "few.zip"
    curl(
        f"{few_instances_proxy.url}/dicom-web/studies?PatientID=ZP-MR-001&accept=application/zip",
        out,
    )
    assert len(check_all(out).records) == len(orthanc.study("ZP-MR-001").instances)
    # Series searches count (0020,1209) the same way.
    r = requests.get(
        f"{few_instances_proxy.url}/dicom-web/studies/{ct.study_uid}/series?accept=application/zip",
        timeout=30,
    )
    assert r.status_code == 413


def stored_bytes(orthanc: SampleUpstream, patient_id: str) -> int:
    return sum(path.stat().st_size for path in orthanc.study(patient_id).files)


@pytest.fixture(scope="module")
def bytes_proxy(orthanc: SampleUpstream, start_proxy: StartProxy) -> Proxy:
    """A byte limit exactly the size of the MR study, sizes from Orthanc (found by ``auto``)."""
    return start_proxy(orthanc.url, "--max-collection-bytes",
                       str(stored_bytes(orthanc, "ZP-MR-001")))


def test_byte_limit_answers_413_before_any_byte(
    bytes_proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    limit = stored_bytes(orthanc, "ZP-MR-001")
    ct = orthanc.study("ZP-CT-001")
    r = requests.get(
        f"{bytes_proxy.url}/dicom-web/studies?PatientID=ZP-CT-001&accept=application/zip",
        timeout=30,
    )
    assert r.status_code == 413 and not r.content.startswith(b"PK")
    assert f"matched 1 studies of {stored_bytes(orthanc, 'ZP-CT-001')} stored bytes" in r.text
    assert f"at most {limit} bytes" in r.text
    r = requests.get(
        f"{bytes_proxy.url}/dicom-web/studies/{ct.study_uid}/series?accept=application/zip",
        timeout=30,
    )
    assert r.status_code == 413 and "series of" in r.text
    # A search of exactly the limit streams, and the sizes were exact: as stored, its DICOM
    # entries weigh what the uploaded files weigh.
    out = tmp_path / "mr.zip"
    curl(f"{bytes_proxy.url}/dicom-web/studies?PatientID=ZP-MR-001", out,
         "Accept: application/zip; transfer-syntax=*")
    check_all(out)
    with zipfile.ZipFile(out) as zf:
        entries = [i for i in zf.infolist() if i.filename.startswith("DICOM/")]
        assert sum(i.file_size for i in entries) == limit


def test_byte_limit_through_an_upstream_that_needs_credentials(
    orthanc_auth: SampleUpstream, start_proxy: StartProxy
) -> None:
    """The sizes are asked with the client's own credentials; without them the upstream's 401
    comes back, not a size."""
    proxy = start_proxy(orthanc_auth.url, "--max-collection-bytes", "1000",
                        "--collection-sizes", "orthanc")
    url = f"{proxy.url}/dicom-web/studies?PatientID=ZP-MR-001&accept=application/zip"
    r = requests.get(url, auth=orthanc_auth.auth, timeout=30)
    assert r.status_code == 413
    assert f"of {stored_bytes(orthanc_auth, 'ZP-MR-001')} stored bytes" in r.text
    assert requests.get(url, timeout=30).status_code == 401


def test_qido_estimate_for_any_origin(
    orthanc: SampleUpstream, start_proxy: StartProxy, tmp_path: Path
) -> None:
    """``--collection-sizes qido`` uses only DICOMweb. On these samples (small native images,
    one JPEG study, SR/KO/PDF objects) the estimate stays within a factor of two of the truth."""
    proxy = start_proxy(orthanc.url, "--max-collection-bytes", "1",
                        "--collection-sizes", "qido")
    for info in orthanc.studies:
        r = requests.get(
            f"{proxy.url}/dicom-web/studies?StudyInstanceUID={info.study_uid}"
            "&accept=application/zip", timeout=30,
        )
        assert r.status_code == 413, r.text
        assert "estimated from QIDO-RS" in r.text
        estimate = int(r.text.split("studies of ")[1].split()[0])
        actual = sum(path.stat().st_size for path in info.files)
        assert actual / 2 <= estimate <= actual * 2, (info.patient_id, estimate, actual)
    ct = orthanc.study("ZP-CT-001")
    r = requests.get(f"{proxy.url}/dicom-web/studies/{ct.study_uid}/series?accept=application/zip",
                     timeout=30)
    assert r.status_code == 413 and "series of" in r.text and "estimated" in r.text
    assert int(r.text.split("series of ")[1].split()[0]) >= sum(
        path.stat().st_size for path in ct.files)  # native pixels: the estimate is above
    roomy = start_proxy(orthanc.url, "--max-collection-bytes", "1G", "--collection-sizes", "qido")
    out = tmp_path / "all.zip"
    curl(f"{roomy.url}/dicom-web/studies?accept=application/zip", out)
    assert len(check_all(out).studies) == len(orthanc.studies)


def readme_loader_snippet() -> str:
    """The README's training-loader snippet, exactly as documented."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("A training loader needs only this:", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_snippet_loads_a_cohort(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """The documented lines, run as a researcher would (only host and port changed): they
    download the CT cohort, check every CRC-32 against MANIFEST.CSV and select the CT rows."""
    snippet = readme_loader_snippet()
    assert "http://127.0.0.1:8080/" in snippet
    snippet = snippet.replace("http://127.0.0.1:8080/", f"{proxy.url}/")
    snippet += "\nprint(len(index), len(ct))\n"
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    studies = qido_studies(orthanc, "ModalitiesInStudy=CT")
    info = check_all(tmp_path / "cohort.zip")
    assert {s.StudyInstanceUID for s in info.studies} == studies
    ct_records = [r for r in info.records if r.series.get("Modality") == "CT"]
    assert run.stdout.split() == [str(len(info.records)), str(len(ct_records))]
    assert ct_records  # a CT cohort with no CT row would prove nothing
