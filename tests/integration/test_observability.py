"""Health, readiness, metrics and logs show a download's whole life."""

from __future__ import annotations

import json
import re
from pathlib import Path

import requests
from conftest import Proxy
from fakeupstream import FakeUpstream
from test_zip_core import curl
from zipcheck import check_python_zipfile

from zipproxy.demo.orthanc import SampleUpstream, free_port


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def log_lines(proxy: Proxy) -> list[dict[str, object]]:
    return [json.loads(line) for line in proxy.log().splitlines() if line.startswith("{")]


def test_health_and_readiness(proxy: Proxy, tmp_path: Path) -> None:
    r = requests.get(f"{proxy.url}/-/healthy", timeout=10)
    assert r.status_code == 200 and r.text == "ok\n"
    r = requests.get(f"{proxy.url}/-/ready", timeout=10)
    assert r.status_code == 200 and "upstream answered" in r.text
    lonely = Proxy(f"http://127.0.0.1:{free_port()}", tmp_path)
    try:
        assert requests.get(f"{lonely.url}/-/healthy", timeout=10).status_code == 200
        r = requests.get(f"{lonely.url}/-/ready", timeout=10)
        assert r.status_code == 503 and "not reachable" in r.text
    finally:
        lonely.stop()


def test_metrics_and_log_follow_a_download(
    proxy: Proxy, orthanc: SampleUpstream, tmp_path: Path
) -> None:
    before = requests.get(f"{proxy.url}/-/metrics", timeout=10).text
    study = orthanc.studies[0]
    out = tmp_path / "m.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}", out,
         "Accept: application/zip", "X-Request-Id: trace-me-42")
    check_python_zipfile(out)
    requests.get(f"{proxy.url}/dicom-web/studies", timeout=10)
    requests.get(f"{proxy.url}/dicom-web/studies/1.2.3.4?accept=application/zip", timeout=10)
    after = requests.get(f"{proxy.url}/-/metrics", timeout=10).text
    assert after.startswith("# HELP") or "# HELP" in after

    def delta(name: str, labels: str = "") -> float:
        return metric(after, name, labels) - metric(before, name, labels)

    assert delta("zipproxy_zip_started_total") >= 1
    assert delta("zipproxy_zip_completed_total") >= 1
    assert delta("zipproxy_zip_instances_total") >= len(study.instances)
    assert delta("zipproxy_zip_bytes_total") >= out.stat().st_size
    assert delta("zipproxy_zip_refused_total", 'status="404"') >= 1
    assert delta("zipproxy_passthrough_requests_total", 'method="GET"') >= 1
    assert delta("zipproxy_zip_duration_seconds_count") >= 1
    assert metric(after, "zipproxy_zip_in_flight") == 0
    # One JSON line per request, carrying the client's request id.
    (line,) = [e for e in log_lines(proxy) if e.get("request_id") == "trace-me-42"]
    assert line["method"] == "GET" and line["status"] == 200
    assert line["outcome"] == "zip-complete" and line["instances"] == len(study.instances)
    assert line["bytes"] == out.stat().st_size
    assert line["path"] == f"/dicom-web/studies/{study.study_uid}"
    assert isinstance(line["duration_ms"], float)


def test_proxy_paths_never_reach_the_upstream(fake: FakeUpstream,
                                              tmp_path: Path) -> None:
    p = Proxy(fake.url, tmp_path)
    try:
        for path in ("/-/healthy", "/-/metrics"):
            assert requests.get(p.url + path, timeout=10).status_code == 200
        requests.get(p.url + "/-/ready", timeout=10)
    finally:
        p.stop()
    # Readiness asks the upstream's root; the other two never touch it.
    assert [seen.path_qs for seen in fake.requests] == ["/"]
