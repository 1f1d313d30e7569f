"""Real-parts fixtures: a private Orthanc 1.10 (DICOMweb plugin) loaded with the sample studies.

``orthanc`` / ``orthanc_auth`` are session-scoped :class:`zipproxy.demo.orthanc.SampleUpstream`
objects: ``.url`` (``http://127.0.0.1:PORT``), ``.dicomweb`` (``.url + "/dicom-web"``),
``.auth`` (``None`` or ``("alice", "secret")``), ``.studies`` (``list[StudyInfo]`` from
``make_samples``, in its order), ``.study(patient_id)``, ``.orthanc`` (the server object).
Tests must not add or delete instances on them: use ``Orthanc`` directly for that.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakeupstream import FakeUpstream, Relay

from zipproxy.demo.orthanc import DEFAULT_BINARY, SampleUpstream, free_port, start_with_samples

AUTH_USERS = {"alice": "secret"}


def _require_orthanc() -> None:
    if not Path(DEFAULT_BINARY).exists():
        pytest.fail(
            f"{DEFAULT_BINARY} not found: apt-get install -y orthanc orthanc-dicomweb",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleUpstream]:
    """Orthanc without authentication, the sample studies uploaded via ``POST /instances``."""
    _require_orthanc()
    with start_with_samples(tmp_path_factory.mktemp("orthanc")) as upstream:
        yield upstream


@pytest.fixture(scope="session")
def orthanc_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleUpstream]:
    """Orthanc with basic auth (users ``{"alice": "secret"}``), the same samples uploaded."""
    _require_orthanc()
    with start_with_samples(tmp_path_factory.mktemp("orthanc-auth"), users=AUTH_USERS) as upstream:
        yield upstream


class Proxy:
    """A real ``zipproxy`` process (the console entry point) on a free loopback port."""

    def __init__(self, upstream: str, workdir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "zipproxy.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zipproxy", "--upstream", upstream, "--host", "127.0.0.1",
             "--port", str(self.port), "--log-format", "json", *extra],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"zipproxy did not start:\n{self.log()}", pytrace=False)
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def proxy(orthanc: SampleUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """zipproxy in front of the sample Orthanc."""
    p = Proxy(orthanc.url, tmp_path_factory.mktemp("proxy"))
    yield p
    p.stop()


@pytest.fixture(scope="session")
def proxy_auth(
    orthanc_auth: SampleUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """zipproxy in front of the Orthanc that requires basic auth."""
    p = Proxy(orthanc_auth.url, tmp_path_factory.mktemp("proxy-auth"))
    yield p
    p.stop()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    """A fault-injecting fake upstream on a free loopback port, one per test module."""
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


StartProxy = Callable[..., Proxy]


@pytest.fixture(scope="module")
def start_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartProxy]:
    """Start zipproxy processes with extra flags for one test module; all stop at its end."""
    started: list[Proxy] = []

    def start(upstream: str, *extra: str) -> Proxy:
        started.append(Proxy(upstream, tmp_path_factory.mktemp("proxy"), *extra))
        return started[-1]

    yield start
    for p in started:
        p.stop()


# -- zipproxy fetch: a faulty link between a zipproxy and the sample Orthanc ------------------


@pytest.fixture(scope="module")
def relay(fake: FakeUpstream, orthanc: SampleUpstream) -> Relay:
    """The faulty link to the sample Orthanc; each test sets its own ``fault``."""
    link = Relay(orthanc.url)
    fake.add("relay", link)
    return link


@pytest.fixture
def faulty(relay: Relay) -> Iterator[Relay]:
    yield relay
    relay.fault = lambda seen: None


@pytest.fixture(scope="module")
def rproxy(fake: FakeUpstream, relay: Relay, start_proxy: StartProxy) -> Proxy:
    """zipproxy whose upstream is the relay (and through it the sample Orthanc)."""
    return start_proxy(f"{fake.url}/relay")
