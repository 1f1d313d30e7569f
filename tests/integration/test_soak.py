"""Soak: hundreds of downloads of every ending, and nothing leaks (issue 13).

One zipproxy in front of a faulty link to the sample Orthanc (:class:`fakeupstream.Relay`): most
requests reach Orthanc unchanged, a few are answered by the link with a reset or a body cut
short. Four clients interleave, for at most ``SECONDS``:

- complete study ZIPs (every fifth read back with zipfile),
- clients that hang up at a random point of their ZIP,
- ZIPs whose upstream resets or is cut mid-body,
- pass-through requests (QIDO-RS searches, metadata, a multipart retrieve).

After the first ``WARM`` operations the proxy's idle state is taken; at the end it must be back
there: open file descriptors and event loop tasks equal, threads no more, RSS within 10 MiB,
and the in-flight gauge 0.
"""

from __future__ import annotations

import io
import random
import re
import socket
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import StartProxy
from fakeupstream import FakeUpstream, Plan, Relay, Relayed

from zipproxy.demo.orthanc import SampleUpstream

OPERATIONS = 2000
WARM = 50
SECONDS = 120.0
CLIENTS = 4
pytestmark = pytest.mark.slow


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    fields["fds"] = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return fields


def fault(seen: object) -> Plan | Relayed | None:
    """The link's faults, chosen by the client through a query parameter the proxy passes on."""
    query = getattr(seen, "path_qs", "")
    if "soak=reset" in query:
        return Plan(segments=[b"--x\r\n"], ending="reset")
    if "soak=cut" in query:
        return Relayed(cut_after=random.randrange(300, 3000))
    return None


def test_no_leaks_over_hundreds_of_downloads(
    fake: FakeUpstream, orthanc: SampleUpstream, start_proxy: StartProxy
) -> None:
    fake.add("soak", Relay(orthanc.url, fault))
    proxy = start_proxy(f"{fake.url}/soak", "--read-timeout", "5")
    base = f"{proxy.url}/dicom-web"
    studies = [s.study_uid for s in orthanc.studies]
    done: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def zip_url(rng: random.Random, extra: str = "") -> str:
        return f"{base}/studies/{rng.choice(studies)}?accept=application/zip{extra}"

    def complete(rng: random.Random) -> str:
        r = requests.get(zip_url(rng), timeout=30)
        assert r.status_code == 200, r.status_code
        if rng.random() < 0.2:
            with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                assert zf.testzip() is None
        return "complete"

    def hang_up(rng: random.Random) -> str:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
            path = zip_url(rng).removeprefix(proxy.url)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(rng.randrange(1, 4000))
        return "hang-up"

    def upstream_fault(rng: random.Random) -> str:
        kind = rng.choice(["reset", "cut"])
        try:
            r = requests.get(zip_url(rng, f"&soak={kind}"), timeout=30)
            assert r.status_code >= 500 or r.status_code == 200
            if r.status_code == 200:  # the ZIP had begun: it must not read back as whole
                with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                    zf.testzip()
                raise AssertionError(f"a {kind} upstream gave a whole ZIP")
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                zipfile.BadZipFile):
            pass
        return kind

    def passthrough(rng: random.Random) -> str:
        study = rng.choice(studies)
        path = rng.choice([f"/studies?StudyInstanceUID={study}", f"/studies/{study}/metadata",
                           f"/studies/{study}"])
        r = requests.get(base + path, timeout=30)
        assert r.status_code == 200, (path, r.status_code)
        return "pass-through"

    choices: list[tuple[float, Callable[[random.Random], str]]] = [
        (0.45, complete), (0.15, hang_up), (0.15, upstream_fault), (0.25, passthrough)]
    todo = iter(range(OPERATIONS))
    warm = threading.Barrier(CLIENTS + 1)
    deadline = time.monotonic() + SECONDS

    def client(seed: int) -> None:
        local = random.Random(13 + seed)
        warmed = False
        while time.monotonic() < deadline:
            with lock:
                index = next(todo, None)
            if index is None:
                break
            if index >= WARM and not warmed:
                warmed = True
                warm.wait(timeout=60)  # all clients pause while the idle state is taken
                warm.wait(timeout=60)
            action = local.choices([c for _, c in choices], [w for w, _ in choices])[0]
            try:
                name = action(local)
            except Exception as exc:
                with lock:
                    errors.append(f"{action.__name__}: {exc!r}")
                continue
            with lock:
                done[name] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    warm.wait(timeout=120)
    time.sleep(1.0)  # let the last hang-ups of the warm phase be noticed
    idle = proc_status(proxy.proc.pid)
    idle_metrics = requests.get(f"{proxy.url}/-/metrics", timeout=10).text
    warm.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=SECONDS + 60)
    assert not errors, errors[:10]
    assert sum(done.values()) >= OPERATIONS - 2 * CLIENTS, done
    assert done["complete"] > 500 and done["hang-up"] > 100 and done["pass-through"] > 200, done
    assert done["reset"] + done["cut"] > 100, done

    deadline = time.monotonic() + 20
    while True:  # the proxy notices the last hang-ups and cuts within its timeouts
        after = proc_status(proxy.proc.pid)
        text = requests.get(f"{proxy.url}/-/metrics", timeout=10).text
        settled = (after["fds"] <= idle["fds"] and metric(text, "zipproxy_zip_in_flight") == 0
                   and metric(text, "zipproxy_event_loop_tasks")
                   <= metric(idle_metrics, "zipproxy_event_loop_tasks"))
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"\nsoak: {dict(done)}; idle {idle}, after {after}")
    assert after["fds"] == idle["fds"], (idle, after)
    assert after["Threads"] <= idle["Threads"], (idle, after)
    assert metric(text, "zipproxy_event_loop_tasks") == metric(idle_metrics,
                                                               "zipproxy_event_loop_tasks")
    assert metric(text, "zipproxy_zip_in_flight") == 0
    assert after["VmRSS"] - idle["VmRSS"] <= 10 * 1024, (idle, after)
