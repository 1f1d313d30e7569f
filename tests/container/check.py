"""The built image, run for real: the checks behind scripts/container.sh (issue 14).

    python tests/container/check.py image   --image ID   --run-id RUN --work DIR
    python tests/container/check.py compose --image NAME --run-id RUN --work DIR -- BUILD-ARGS

``image``: a real Orthanc (Debian's package, started by :mod:`zipproxy.demo.orthanc` on a free
loopback port) holds the sample studies, later two bulk studies. The image runs as the
Kubernetes manifests run it (read-only root, a tmpfs /tmp, no capabilities, no-new-privileges),
with ``--network host`` on another free loopback port. Then:

1. A study ZIP and a collection ZIP (every sample study, as stored), downloaded with curl, pass
   every reader of :func:`zipcheck.check_all` (zipfile CRCs, dciodvfy, ...) and hold exactly
   the uploaded instances.
2. The container's process runs as uid and gid 10001 (read from the host's /proc).
3. ``podman healthcheck run`` passes: the image's own HEALTHCHECK.
4. ``podman stop`` (SIGTERM) with two ZIPs in flight drains as the README says (sigterm.py).
5. The image is lean: the demo extra (requests, requests-toolbelt) and the test tools are not
   in it, only the runtime dependencies of pyproject.toml.

``compose``: ``podman-compose build`` and ``up -d`` on deploy/docker-compose.yml with
tests/container/compose.standin.yml (stand-in images) and a free host port on top; one study
STOWed through zipproxy, downloaded as a ZIP and checked as above; ``down -v``.

Every container started here carries the label ``zipproxy.test.run=RUN`` (compose's carry their
project name RUN) and the Orthanc's PID is in ``WORK/orthanc.pid``: scripts/container.sh's trap
removes and stops them whatever happens here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from sigterm import check_sigterm
from support import ROOT, ZIP, check_zip, curl, run, say, wait_ready

from zipproxy.demo.load import stow
from zipproxy.demo.orthanc import SampleUpstream, free_port, start_with_samples
from zipproxy.demo.samples import make_bulk_study, make_samples

NON_ROOT = 10001
GRACE = 8  # ZIPPROXY_SHUTDOWN_GRACE of the run (the image's default, 30, would only be slower)
COMPOSE_FILES = ("deploy/docker-compose.yml", "tests/container/compose.standin.yml")
PORT_FILE = "compose.port.yml"


# --- image -------------------------------------------------------------------------------------


@dataclass
class Proxy:
    """The image running with ``--network host`` on a free loopback port."""

    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, image: str, upstream: str, run_id: str) -> Proxy:
        proxy = cls(f"{run_id}-proxy", free_port())
        run("podman", "run", "-d", "--name", proxy.name, "--label", f"zipproxy.test.run={run_id}",
            "--network", "host",
            # As deploy/k8s/ runs it: readOnlyRootFilesystem, an emptyDir /tmp, no capabilities.
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            # No systemd here to schedule the periodic check; `podman healthcheck run` still
            # runs the image's HEALTHCHECK command.
            "--health-interval", "disable",
            "-e", f"ZIPPROXY_UPSTREAM={upstream}", "-e", f"ZIPPROXY_PORT={proxy.port}",
            "-e", f"ZIPPROXY_SHUTDOWN_GRACE={GRACE}", image)
        wait_ready(proxy.url + "/-/ready", [proxy.name])
        return proxy


def check_downloads(proxy: Proxy, upstream: SampleUpstream, work: Path) -> None:
    say("1. ZIPs through the container")
    study = upstream.study("ZP-MR-001")  # Müller^Jürgen: ISO_IR 192 names in the DICOMDIR
    out = work / "study.zip"
    curl(f"{proxy.url}/dicom-web/studies/{study.study_uid}", out)
    check_zip(out, study, as_stored=False)
    out = work / "collection.zip"
    curl(f"{proxy.url}/dicom-web/studies", out, f"{ZIP}; transfer-syntax=*")
    check_zip(out, upstream.studies, as_stored=True)


def check_user(proxy: Proxy) -> None:
    pid = run("podman", "inspect", "-f", "{{.State.Pid}}", proxy.name)
    status = Path(f"/proc/{pid}/status").read_text()
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()
           if line.startswith(("Uid:", "Gid:"))}
    command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    assert ids == {"Uid": [str(NON_ROOT)] * 4, "Gid": [str(NON_ROOT)] * 4}, ids
    assert command[-1].endswith(b"/zipproxy"), command
    say(f"2. the container's process (host pid {pid}: {b' '.join(command).decode()}) runs as "
        f"uid {NON_ROOT}, gid {NON_ROOT}")


def check_healthcheck(proxy: Proxy) -> None:
    test = run("podman", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", proxy.name)
    run("podman", "healthcheck", "run", proxy.name)
    state = run("podman", "inspect", "-f", "{{.State.Health.Status}}", proxy.name)
    assert state == "healthy", state
    say(f"3. podman healthcheck run: {state} ({test[:70]}...)")


LEAN_PROBE = """
import importlib.metadata as md, importlib.util as iu, sys
absent = ("requests", "requests_toolbelt", "pandas", "pytest", "rich")
found = [m for m in absent if iu.find_spec(m) is not None]
print(" ".join(sorted(d.metadata["Name"] for d in md.distributions())))
sys.exit(1 if found else 0)
"""


def check_lean(image: str) -> None:
    dists = run("podman", "run", "--rm", "--network", "none", "--entrypoint", "python",
                image, "-c", LEAN_PROBE)
    say(f"5. the image holds only the runtime: {dists}")


def image_checks(image: str, run_id: str, work: Path) -> None:
    bulk = work / "bulk"
    # 0.5 MiB instances: 8 MiB for the short download, 64 MiB for the long one.
    short = make_bulk_study(bulk, 1, 16, 512, 512, patient_id="ZP-TERM-SHORT", key="short")
    long = make_bulk_study(bulk, 1, 128, 512, 512, patient_id="ZP-TERM-LONG", key="long")
    with start_with_samples(work / "orthanc") as upstream:
        (work / "orthanc.pid").write_text(str(upstream.orthanc.pid))
        say(f"Orthanc {upstream.url} (pid {upstream.orthanc.pid}): "
            f"{len(upstream.studies)} sample studies")
        proxy = Proxy.start(image, upstream.url, run_id)
        try:
            say(f"image {image[:12]} running as {proxy.name} on {proxy.url}")
            check_downloads(proxy, upstream, work)
            check_user(proxy)
            check_healthcheck(proxy)
            upstream.orthanc.upload([*short.files, *long.files])  # after the collection ZIP
            check_sigterm(proxy.name, proxy.port, short, long, work, GRACE)
            check_lean(image)
        finally:
            run("podman", "rm", "-f", "-t", "0", proxy.name, check=False)


# --- compose -----------------------------------------------------------------------------------


def compose(run_id: str, work: Path, build_args: Sequence[str], *args: str) -> str:
    # No pod: each service is its own container on the project's network, as with Docker.
    cmd = [sys.executable, "-m", "podman_compose", "-p", run_id, "--in-pod", "false"]
    for path in (*(ROOT / name for name in COMPOSE_FILES), work / PORT_FILE):
        cmd += ["-f", str(path)]
    if build_args:
        cmd.append("--podman-build-args=" + shlex.join(build_args))
    return run(*cmd, *args)


def compose_checks(image: str, run_id: str, work: Path, build_args: Sequence[str]) -> None:
    port = free_port()
    os.environ["TEST_ZIPPROXY_IMAGE"] = image
    # A free loopback port instead of 8080, which another program may hold. Generated, because
    # podman-compose 1.6 does not interpolate variables inside an !override value.
    (work / PORT_FILE).write_text(
        f'services:\n  zipproxy:\n    ports: !override\n      - "127.0.0.1:{port}:8080"\n')
    started = time.monotonic()
    compose(run_id, work, build_args, "build")
    say(f"podman-compose build: {image} in {time.monotonic() - started:.0f} s")
    try:
        compose(run_id, work, build_args, "up", "-d")
        proxy, orthanc = f"{run_id}_zipproxy_1", f"{run_id}_orthanc_1"
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/-/ready", [proxy, orthanc])
        published = run("podman", "port", orthanc)
        assert not published, f"Orthanc is published: {published}"
        say(f"podman-compose up: {proxy} published on {base}, {orthanc} not published")
        study = make_samples(work / "compose-samples")[0]
        stow(base + "/dicom-web", study.files)  # STOW-RS, passed through to Orthanc
        out = work / "compose.zip"
        curl(f"{base}/dicom-web/studies/{study.study_uid}", out)
        check_zip(out, study, as_stored=False)
    finally:
        with contextlib.suppress(AssertionError):
            compose(run_id, work, (), "down", "-v")
    say("podman-compose down -v")


# --- main --------------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit, so the ``finally`` blocks (Orthanc, containers) still run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["image", "compose"])
    parser.add_argument("--image", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--work", type=Path, required=True)
    # Everything after "--" is for podman build (compose); it starts with dashes itself.
    ours, build_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if (
        "--" in argv) else (argv, [])
    args = parser.parse_args(ours)
    with sigterm_unwinds():
        if args.what == "image":
            image_checks(args.image, args.run_id, args.work)
        else:
            compose_checks(args.image, args.run_id, args.work, build_args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
