"""``zipproxy fetch`` when things go wrong: retried, or reported, never a false success.

Faults come from :class:`fakeupstream.Relay`, a faulty link between the proxy and the real
Orthanc: it passes every request on and spoils only the ones a test names (an error status, a
body cut short, a rewritten search answer). Orthanc itself cuts its answer for a transfer
syntax it cannot produce.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import Proxy
from fakeupstream import FakeUpstream, Plan, Relay, Relayed, Seen
from fetchrun import (
    checksum_columns,
    downloads,
    load_cohort,
    log_lines,
    run_fetch,
    verified_lines,
)
from zipcheck import expected_instances_match

from zipproxy.demo.orthanc import SampleUpstream

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"  # Orthanc cannot encode 16-bit images in it


def test_failing_twice_then_retried_and_verified(
    faulty: Relay, rproxy: Proxy, orthanc: SampleUpstream, fake: FakeUpstream, tmp_path: Path
) -> None:
    """One study gets a 503 from the upstream, then a body cut mid-stream, then the real
    answer; another always gets a 503. Every request carries the user's header."""
    flaky, broken = orthanc.study("ZP-MR-001"), orthanc.study("ZP-JP-001")
    attempts: list[str] = []

    def fault(seen: Seen) -> Plan | Relayed | None:
        path = seen.path_qs.split("?")[0]
        if path.endswith(broken.study_uid):
            return Plan(status=503, content_type="text/plain", segments=[b"busy\n"])
        if path.endswith(flaky.study_uid):
            attempts.append(path)
            if len(attempts) == 1:
                return Plan(status=503, content_type="text/plain", segments=[b"try later\n"])
            if len(attempts) == 2:
                return Relayed(cut_after=5000)
        return None

    faulty.fault = fault
    started = len(fake.seen("relay"))
    out = tmp_path / "retry"
    result = run_fetch(f"{rproxy.url}/dicom-web/studies?ModalitiesInStudy=MR", "--out", str(out),
                       "--retries", "2", "--retry-wait", "0.1", "--header", "X-Trace: fetch-15")
    assert result.returncode == 1, result.stdout + result.stderr
    assert list(verified_lines(result.stdout)) == [flaky.study_uid]
    expected_instances_match(out / f"study-{flaky.study_uid}.zip", flaky)
    retry_lines = [ln for ln in result.stdout.splitlines() if ln.startswith("retry")]
    mine = [ln for ln in retry_lines if flaky.study_uid in ln]
    assert len(mine) == 2 and "HTTP 503" in mine[0] and "cut after" in mine[1], retry_lines
    log = downloads(rproxy, flaky)
    assert [(e["status"], e["outcome"]) for e in log[-3:]] == [
        (503, "upstream-status"), (200, "aborted"), (200, "zip-complete")]
    # The failure table: the broken study, its status, its attempts; no file of it.
    table = result.stdout[result.stdout.index("Not fetched: 1 study"):]
    row = next(ln for ln in table.splitlines() if broken.study_uid in ln)
    assert re.search(r"│ 503 +│ 3 +│ HTTP 503", row), table
    assert not list(out.glob(f"*{broken.study_uid}*"))
    assert set(load_cohort(out).StudyInstanceUID) == {flaky.study_uid}
    seen = fake.seen("relay")[started:]
    assert seen and all(s.header("X-Trace") == "fetch-15" for s in seen)


def test_transfer_syntax_the_upstream_cannot_produce(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """Orthanc cannot encode 16-bit images as JPEG baseline. When such an image comes first it
    answers 500; when an object it need not transcode (SR, KO, PDF) comes first, it answers 200
    and cuts the body at the image, and the proxy aborts the ZIP. Orthanc's order varies: either
    way fetch reports the failure with the transfer syntax named, never a success."""
    mixed = orthanc.study("ZP-MIX-001")
    out = tmp_path / "ts"
    result = run_fetch(f"{proxy.url}/dicom-web/studies?PatientID=ZP-MIX-001", "--out", str(out),
                       "--transfer-syntax", JPEG_BASELINE, "--retries", "1", "--retry-wait", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert not verified_lines(result.stdout)
    reasons = [ln for ln in result.stdout.splitlines() if ln.startswith(("retry", "FAILED"))]
    outcomes = [e["outcome"] for e in downloads(proxy, mixed)[-2:]]
    assert len(reasons) == len(outcomes) == 2, result.stdout
    for reason, outcome in zip(reasons, outcomes, strict=True):
        assert f"can the upstream produce transfer syntax {JPEG_BASELINE}?" in reason
        if outcome == "aborted":  # 200, then the cut
            assert "the ZIP was cut after" in reason, reason
        else:
            assert outcome == "upstream-status" and "HTTP 500" in reason, (outcome, reason)
    assert not list(out.glob("*.zip")) and not (out / "cohort.csv").exists()


def test_fewer_instances_than_the_search_counted(
    faulty: Relay, rproxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """A server that splits a study (or leaves instances out) fails verification: here the
    search says one instance more than the study's retrieve brings."""
    mr = orthanc.study("ZP-MR-001")

    def more(body: bytes) -> bytes:
        found = json.loads(body)
        for item in found:
            item["00201208"]["Value"][0] += 1
        return json.dumps(found).encode()

    faulty.fault = lambda seen: (Relayed(rewrite=more)
                                 if seen.path_qs.startswith("/relay/dicom-web/studies?") else None)
    result = run_fetch(f"{rproxy.url}/dicom-web/studies?PatientID=ZP-MR-001", "--out",
                       str(tmp_path / "short"), "--retries", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"the ZIP holds {len(mr.instances)} instances, the search counted "
            f"{len(mr.instances) + 1}") in result.stdout
    assert not list((tmp_path / "short").glob("*.zip"))


def test_checksum_sha256_is_asked_for_and_verified(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """``--checksum sha256`` adds ``manifest=sha256`` to each ZIP request. A proxy that knows it
    adds a sha256 column, which is verified; one that does not refuses it (400), and fetch
    fails clearly rather than verifying less than asked."""
    out = tmp_path / "sha"
    result = run_fetch(f"{proxy.url}/dicom-web/studies?PatientID=ZP-MR-001", "--out", str(out),
                       "--checksum", "sha256", "--retries", "0")
    if result.returncode == 0:
        cohort = load_cohort(out)
        assert "sha256" in checksum_columns(cohort)
        line = verified_lines(result.stdout)[orthanc.study("ZP-MR-001").study_uid]
        assert "sha256" in line.rsplit("(", 1)[1]
    else:
        failed = next(ln for ln in result.stdout.splitlines() if ln.startswith("FAILED"))
        assert "HTTP 400" in failed and "manifest" in failed, result.stdout


def test_a_search_without_instance_counts(
    faulty: Relay, rproxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    """A server whose search leaves (0020,1208) out: each match is counted with an
    instance-level search, and its ZIP verified against that count."""
    mr = orthanc.study("ZP-MR-001")

    def without_counts(body: bytes) -> bytes:
        found = json.loads(body)
        for item in found:
            del item["00201208"]
        return json.dumps(found).encode()

    faulty.fault = lambda seen: (Relayed(rewrite=without_counts)
                                 if seen.path_qs.startswith("/relay/dicom-web/studies?") else None)
    result = run_fetch(f"{rproxy.url}/dicom-web/studies?PatientID=ZP-MR-001", "--out",
                       str(tmp_path / "counted"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"found 1 study, {len(mr.instances)} instances" in result.stdout
    assert list(verified_lines(result.stdout)) == [mr.study_uid]
    counted = [e for e in log_lines(rproxy)
               if e["path"] == f"/dicom-web/studies/{mr.study_uid}/instances"]
    assert counted, "the instances were counted through the proxy"
