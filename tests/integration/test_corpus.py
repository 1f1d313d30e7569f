"""Issue 12: the corpus of clinical shapes (tests/dicomcorpus.py) through a real Orthanc and proxy.

A private Orthanc (module-scoped; the session ``orthanc`` stays untouched) gets the corpus one
instance at a time, in order, so that the arrival order is known (``CorpusStudy.arrival``).
Every study ZIP and every series ZIP must pass ``zipcheck.check_all`` (study ZIPs) and
``dicomdircheck.check_dicomdir_matches`` (all). The RSS test compares the proxy's peak RSS while
streaming a study with one 50 MiB RT Structure Set with the same for 50 MiB of CT slices.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from conftest import Proxy, StartProxy
from dicomcorpus import MIB, CorpusStudy, big_rtstruct_study, ct_study, make_corpus
from dicomdircheck import check_dicomdir_matches
from test_load import proc_status
from zipcheck import check_all, expected_instances_match

from zipproxy.demo.orthanc import Orthanc

ZIP_STORED = "application/zip; transfer-syntax=*"
RSS_SLACK = 24 * MIB  # headroom over the CT study's growth: allocator noise, not object size


@pytest.fixture(scope="module")
def corpus() -> dict[str, CorpusStudy]:
    return {study.key: study for study in make_corpus()}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory,
             corpus: dict[str, CorpusStudy]) -> Iterator[Orthanc]:
    with Orthanc(tmp_path_factory.mktemp("corpus") / "orthanc") as server:
        for study in corpus.values():
            for inst in study.instances:  # one at a time: the upload order is the test's input
                server.upload([inst.data], workers=1)
        yield server


@pytest.fixture(scope="module")
def proxy(upstream: Orthanc, start_proxy: StartProxy) -> Proxy:
    return start_proxy(upstream.url)


def download(url: str, out: Path, accept: str = ZIP_STORED) -> Path:
    with requests.get(url, headers={"Accept": accept}, stream=True, timeout=300) as response:
        assert response.status_code == 200, (url, response.status_code, response.text[:500])
        with out.open("wb") as fp:
            for chunk in response.iter_content(1 << 20):
                fp.write(chunk)
    return out


def expected_types(study: CorpusStudy) -> dict[str, str]:
    return {inst.sop_uid: inst.record_type for inst in study.instances}


def sop_uids_in_zip(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [str(pydicom.dcmread(zf.open(name), stop_before_pixels=True,
                                    specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
                for name in zf.namelist() if name.startswith("DICOM/")]


@pytest.mark.parametrize("key", ["rt", "sparse", "types"])
def test_orthanc_sends_the_predicted_order(upstream: Orthanc, corpus: dict[str, CorpusStudy],
                                           key: str) -> None:
    """Precondition of every first/last case: Orthanc 1.10's study retrieve sends the series
    newest-created first, each in upload order (measured; dicomcorpus docstring)."""
    study = corpus[key]
    response = requests.get(f"{upstream.dicomweb}/studies/{study.study_uid}", timeout=300,
                            headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert response.status_code == 200
    uids = re.findall(rb"\x02\x00\x03\x00UI..([0-9.]+)", response.content)
    assert [u.decode() for u in uids] == [inst.sop_uid for inst in study.arrival()]


@pytest.mark.parametrize("key", ["rt", "sparse", "types"])
def test_study_zip(proxy: Proxy, corpus: dict[str, CorpusStudy], tmp_path: Path,
                   key: str) -> None:
    study = corpus[key]
    out = download(f"{proxy.url}/dicom-web/studies/{study.study_uid}", tmp_path / "study.zip")
    check_all(out)
    expected_instances_match(out, study.write(tmp_path / "files"), transfer_syntax_star=True)
    assert sop_uids_in_zip(out) == [inst.sop_uid for inst in study.arrival()]
    check_dicomdir_matches(out, expected_types(study))


@pytest.mark.parametrize("key", ["rt", "sparse", "types"])
def test_every_series_zip(proxy: Proxy, corpus: dict[str, CorpusStudy], tmp_path: Path,
                          key: str) -> None:
    """Each series alone: its first instance is the first the proxy sees."""
    study = corpus[key]
    problems = []
    for series_uid, members in study.series().items():
        out = download(f"{proxy.url}/dicom-web/studies/{study.study_uid}/series/{series_uid}",
                       tmp_path / "series.zip")
        try:
            assert sop_uids_in_zip(out) == [inst.sop_uid for inst in members]
            check_dicomdir_matches(out, expected_types(study))
        except AssertionError as exc:
            problems.append(f"series {members[0].case.rsplit('/', 1)[0]}: {exc}")
    assert not problems, "\n\n".join(problems)


def _peak_growth(proxy: Proxy, study: CorpusStudy, warmup: CorpusStudy, tmp: Path) -> int:
    """VmHWM growth of a fresh proxy over its post-warm-up peak while streaming ``study``."""
    assert proxy.proc.pid
    download(f"{proxy.url}/dicom-web/studies/{warmup.study_uid}", tmp / "warm.zip")
    before = proc_status(proxy.proc.pid)["VmHWM"]
    download(f"{proxy.url}/dicom-web/studies/{study.study_uid}", tmp / "big.zip")
    return proc_status(proxy.proc.pid)["VmHWM"] - before


def test_peak_rss_of_a_50_mib_structure_set(upstream: Orthanc, start_proxy: StartProxy,
                                            corpus: dict[str, CorpusStudy], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A 50 MiB RT Structure Set must cost what 50 MiB of CT slices cost: the bound is the
    per-stream one (hold limit, header parsing), not the object's size. Fresh proxies, so
    VmHWM is this stream's; the CT study is the control for allocator and buffer noise."""
    rtstruct, slices = big_rtstruct_study(50 * MIB), ct_study(50 * MIB)
    for study in (rtstruct, slices):
        for inst in study.instances:
            upstream.upload([inst.data], workers=1)
    warmup = corpus["sparse"]
    ct_growth = _peak_growth(start_proxy(upstream.url), slices, warmup, tmp_path)
    rt_growth = _peak_growth(start_proxy(upstream.url), rtstruct, warmup, tmp_path)
    size = max(len(inst.data) for inst in rtstruct.instances)
    with capsys.disabled():
        print(f"\npeak RSS growth streaming a {size / MIB:.1f} MiB RT Structure Set: "
              f"{rt_growth / MIB:.1f} MiB; {slices.size / MIB:.1f} MiB of CT "
              f"({len(slices.instances)} slices): {ct_growth / MIB:.1f} MiB")
    assert rt_growth <= max(ct_growth, 0) + RSS_SLACK, (rt_growth / MIB, ct_growth / MIB)
    assert rt_growth < size / 2, f"peak grew by {rt_growth / MIB:.1f} MiB for {size / MIB} MiB"
