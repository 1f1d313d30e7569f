"""Run a private Orthanc (with the DICOMweb plugin) by hand, for tests and demos.

Each :class:`Orthanc` gets its own config JSON, storage folder and log in ``workdir`` and a free
loopback port; no systemd, no shared state. See ``shared/notes/orthanc.md`` for the measured
behaviour of Orthanc 1.10 + DICOMweb 1.7 (Debian 12 packages).

    with Orthanc(tmp / "orthanc", users={"alice": "secret"}) as server:
        server.upload(paths)
        requests.get(server.dicomweb + "/studies", auth=server.auth)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

from zipproxy.demo.load import FileLike, stow, upload
from zipproxy.demo.samples import StudyInfo, make_samples

__all__ = [
    "DEFAULT_BINARY",
    "DEFAULT_PLUGIN",
    "Orthanc",
    "OrthancError",
    "SampleUpstream",
    "free_port",
    "start_with_samples",
]

DEFAULT_BINARY = "/usr/sbin/Orthanc"
DEFAULT_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

_PORT_CLASH_MARKERS = ("already in use", "(code 2003)")


class OrthancError(RuntimeError):
    """Orthanc could not be started, or a request to it failed."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Orthanc:
    """One Orthanc process with its own config, storage and log below ``workdir``.

    ``users`` turns HTTP basic authentication on (``RegisteredUsers``); :attr:`auth` is then the
    first user's ``(name, password)`` and every helper method sends it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        name: str = "upstream",
        binary: str = DEFAULT_BINARY,
        plugin: str = DEFAULT_PLUGIN,
        start_timeout: float = 30.0,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()  # Orthanc resolves paths from elsewhere
        self.users = dict(users) if users else None
        self.name = name
        self.binary = binary
        self.plugin = plugin
        self.start_timeout = start_timeout
        self.extra_config = dict(extra_config or {})
        self.config_path = self.workdir / "orthanc.json"
        self.storage_dir = self.workdir / "db"
        self.log_path = self.workdir / "orthanc.log"
        self.console_path = self.workdir / "orthanc.console.log"
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self.port is None:
            raise OrthancError("Orthanc is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb service root, ``url + "/dicom-web"`` (no trailing slash)."""
        return self.url + "/dicom-web"

    @property
    def auth(self) -> tuple[str, str] | None:
        if not self.users:
            return None
        user, password = next(iter(self.users.items()))
        return (user, password)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    def config(self, port: int) -> dict[str, Any]:
        """The config JSON written for ``port`` (notes/orthanc.md's working config)."""
        cfg: dict[str, Any] = {
            "Name": self.name,
            "StorageDirectory": str(self.storage_dir),
            "IndexDirectory": str(self.storage_dir),
            "Plugins": [self.plugin],
            "HttpPort": port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": dict(self.users or {}),
            "DicomServerEnabled": False,
            "OrthancExplorerEnabled": False,
            "WebDavEnabled": False,
            "SaveJobs": False,
            "DefaultEncoding": "Utf8",
            # No DicomWeb.Host/Ssl: the plugin then builds RetrieveURLs and BulkDataURIs from the
            # request (Forwarded, else Host), so behind zipproxy they point at the proxy.
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
            },
        }
        for key, value in self.extra_config.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        return cfg

    def start(self, *, attempts: int = 3) -> Self:
        """Start Orthanc and wait until ``GET /system`` answers 200 (at most start_timeout s).

        A port taken between choosing and binding is retried with a new port. Raises
        :class:`OrthancError` with the log's tail on any other failure.
        """
        if self.process is not None:
            raise OrthancError(f"Orthanc already running (pid {self.process.pid})")
        if not Path(self.binary).exists():
            raise OrthancError(f"Orthanc binary not found: {self.binary}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        last_error: OrthancError | None = None
        for _ in range(attempts):
            port = free_port()
            try:
                self._start_once(port)
                return self
            except _PortClash as exc:
                last_error = OrthancError(str(exc))
                continue
        raise last_error or OrthancError("Orthanc did not start")

    def _start_once(self, port: int) -> None:
        self.config_path.write_text(json.dumps(self.config(port), indent=2), encoding="utf-8")
        for path in (self.log_path, self.console_path):
            path.unlink(missing_ok=True)
        with self.console_path.open("wb") as console:
            process = subprocess.Popen(
                [self.binary, f"--logfile={self.log_path}", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.process = process
        self.port = port
        atexit.register(self._atexit_stop)
        deadline = time.monotonic() + self.start_timeout
        with requests.Session() as session:
            while True:
                if process.poll() is not None:
                    self._forget()
                    tail = self.log_tail()
                    if _looks_like_port_clash(tail):
                        raise _PortClash(f"Orthanc could not bind port {port}:\n{tail}")
                    raise OrthancError(
                        f"Orthanc exited with status {process.returncode} during start:\n{tail}"
                    )
                # 200 from /system alone is not enough: during a port clash another server
                # may be answering. Ours logs "HTTP server listening on port: N" first.
                if self._log_says_listening(port):
                    try:
                        response = session.get(self.url + "/system", auth=self.auth, timeout=2)
                        if response.status_code == 200 and process.poll() is None:
                            self._check_plugin(session)
                            return
                    except requests.RequestException:
                        pass
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise OrthancError(
                        f"Orthanc not ready after {self.start_timeout:.0f} s on port {port}:\n"
                        f"{tail}"
                    )
                time.sleep(0.05)

    def _check_plugin(self, session: requests.Session) -> None:
        """Orthanc starts even when a plugin fails to load: make sure DICOMweb is there."""
        if not self.plugin:
            return
        response = session.get(self.url + "/plugins", auth=self.auth, timeout=5)
        if response.status_code != 200 or "dicom-web" not in response.json():
            tail = self.log_tail()
            self.stop()
            raise OrthancError(f"the DICOMweb plugin did not load ({self.plugin}):\n{tail}")

    def _log_says_listening(self, port: int) -> bool:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        return f"HTTP server listening on port: {port} " in text

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM our own process, wait up to ``timeout`` s, then SIGKILL. Returns its status."""
        process = self.process
        if process is None:
            return None
        try:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            return process.returncode
        finally:
            self._forget()

    def _forget(self) -> None:
        self.process = None
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit_stop)

    def _atexit_stop(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=5)

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of Orthanc's log (and of its console output)."""
        chunks = []
        for path in (self.log_path, self.console_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if text.strip():
                chunks.append(f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(chunks) or "(no log output)"

    def reset_storage(self) -> None:
        """Delete the storage folder (only while stopped)."""
        if self.process is not None:
            raise OrthancError("stop Orthanc before resetting its storage")
        shutil.rmtree(self.storage_dir, ignore_errors=True)

    # -- requests ----------------------------------------------------------------------------

    def session(self) -> requests.Session:
        """A new session with our credentials set."""
        session = requests.Session()
        session.auth = self.auth
        return session

    def upload(
        self, items: Iterable[FileLike] | FileLike, *, workers: int = 4
    ) -> list[dict[str, Any]]:
        """POST raw Part-10 files to ``/instances`` (:func:`zipproxy.demo.load.upload`)."""
        return upload(self.url + "/instances", items, auth=self.auth, workers=workers)

    def stow(self, files: Iterable[FileLike], *, study_uid: str | None = None) -> dict[str, Any]:
        """Upload with STOW-RS (see :func:`zipproxy.demo.load.stow`)."""
        return stow(self.dicomweb, files, auth=self.auth, study_uid=study_uid)

    def get_json(self, path: str, **params: str) -> Any:
        """GET ``url + path`` and decode JSON (raises on a non-200 status)."""
        with self.session() as session:
            response = session.get(self.url + path, params=params, timeout=60)
        if response.status_code != 200:
            raise OrthancError(f"GET {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    def __repr__(self) -> str:
        state = f"pid {self.pid}, {self.url}" if self.process is not None else "stopped"
        return f"<Orthanc {self.workdir} ({state})>"


class _PortClash(OrthancError):
    pass


def _looks_like_port_clash(log: str) -> bool:
    # Orthanc 1.10: "The TCP port of the HTTP server is privileged or already in use" (2003)
    text = log.lower()
    return any(marker in text for marker in _PORT_CLASH_MARKERS)


@dataclass
class SampleUpstream:
    """A running Orthanc plus the sample studies loaded into it."""

    orthanc: Orthanc
    studies: list[StudyInfo]
    sample_dir: Path
    users: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.orthanc.url

    @property
    def dicomweb(self) -> str:
        return self.orthanc.dicomweb

    @property
    def auth(self) -> tuple[str, str] | None:
        return self.orthanc.auth

    def study(self, patient_id: str) -> StudyInfo:
        """The sample study of ``patient_id`` (``""`` for the one without keys)."""
        for info in self.studies:
            if info.patient_id == patient_id:
                return info
        raise KeyError(patient_id)

    def stop(self) -> None:
        self.orthanc.stop()


@contextlib.contextmanager
def start_with_samples(
    workdir: Path, *, users: dict[str, str] | None = None, use_stow: bool = False
) -> Iterator[SampleUpstream]:
    """Write :func:`make_samples` to ``workdir/samples``, start Orthanc in ``workdir/orthanc``,
    upload them (``POST /instances``, or STOW-RS with ``use_stow``), yield, then stop it."""
    workdir = Path(workdir)
    studies = make_samples(workdir / "samples")
    with Orthanc(workdir / "orthanc", users=users) as server:
        files = [path for info in studies for path in info.files]
        if use_stow:
            for info in studies:
                server.stow(info.files)
        else:
            server.upload(files)
        yield SampleUpstream(server, studies, workdir / "samples", users)
