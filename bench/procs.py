"""The processes the bench measures, and what /proc says about them.

- :class:`ProxyProcess`: ``python -m zipproxy`` on a free loopback port (the current tree, or a
  baseline revision's package through ``PYTHONPATH``);
- :class:`NginxProcess`: Debian's nginx-light relaying Orthanc, with its own config, pid file,
  logs and temp paths under the bench workdir (``worker_processes 1``, ``proxy_buffering off``,
  ``proxy_http_version 1.1``, 64 KiB relay buffer);
- CPU (``utime + stime`` of every thread, ``/proc/PID/stat``) and peak RSS (``VmHWM``, reset
  with ``echo 5 > /proc/PID/clear_refs``) summed over a process and its descendants.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.common import REPO
from zipproxy.demo.orthanc import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
NGINX = "/usr/sbin/nginx"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from #3 (state) on


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (scan of /proc by parent PID)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f is not None:
            total += int(f[11]) + int(f[12])  # utime, stime (all threads, exited ones too)
    return total / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Measured:
    """A process tree rooted at ``self.pid``: its CPU seconds and peak RSS."""

    pid: int

    def pids(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss_mib(self) -> float:
        return sum(status_kib(p, "VmRSS") for p in self.pids()) / 1024

    def peak_rss_mib(self) -> float:
        """VmHWM summed over the tree (parent + children)."""
        return sum(status_kib(p, "VmHWM") for p in self.pids()) / 1024

    def reset_peak(self) -> bool:
        """``echo 5 > clear_refs`` resets VmHWM to the current RSS (Linux >= 4.0)."""
        ok = True
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok


class _Server(Measured):
    """A child process in its own session, with its output in ``log_path``."""

    name = "server"

    def __init__(self, cmd: list[str], port: int, log_path: Path, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + path, timeout=2).status_code < 500:
                    return
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Children left behind in the process group we created (its id is our child's PID).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


class ProxyProcess(_Server):
    """``python -m zipproxy``; with ``package_root`` that folder's ``zipproxy/`` is imported."""

    def __init__(self, upstream: str, workers: int, logdir: Path, label: str, *extra: str,
                 package_root: Path | None = None) -> None:
        self.name = f"zipproxy {label} (workers={workers})"
        self.workers = workers
        env = dict(os.environ)
        cwd = REPO
        if package_root is not None:
            # `python -m` puts the working folder first on sys.path, PYTHONPATH next: both point
            # at the baseline, ahead of the editable install of the current tree.
            env["PYTHONPATH"] = str(package_root)
            cwd = package_root
        port = free_port()
        cmd = [sys.executable, "-m", "zipproxy", "--upstream", upstream, "--host", "127.0.0.1",
               "--port", str(port), "--log-format", "text", "--workers", str(workers),
               *extra]
        super().__init__(cmd, port, logdir / f"zipproxy-{label}.log", cwd, env)
        self.wait_ready("/system")


def nginx_available() -> str | None:
    """The nginx binary, or None."""
    return NGINX if Path(NGINX).exists() else shutil.which("nginx")


NGINX_CONF = """\
# zipbench's own nginx: a plain relay of Orthanc, like a reverse proxy in front of it.
# proxy_buffering off relays through one buffer of proxy_buffer_size: nginx's default (one
# 4 KiB page) costs ~3x the CPU per GiB of a 64 KiB buffer here, and would flatter the ZIP.
daemon off;
master_process on;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/client_body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 64k;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}
}}
"""


class NginxProcess(_Server):
    """nginx (master + one worker) relaying ``upstream``; config and files under ``root``."""

    name = "nginx"

    def __init__(self, upstream: str, root: Path) -> None:
        exe = nginx_available()
        if exe is None:
            raise RuntimeError("nginx is not installed (scripts/setup.sh --bench installs "
                               "nginx-light)")
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=root, port=port, upstream=upstream))
        cmd = [exe, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]
        super().__init__(cmd, port, root / "console.log", root)
        self.wait_ready("/system")
        self.version = subprocess.run([exe, "-v"], capture_output=True, text=True,
                                      check=False).stderr.strip().partition("/")[2]

    def stop(self) -> None:
        # SIGQUIT: graceful shutdown of master and worker.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        super().stop()
