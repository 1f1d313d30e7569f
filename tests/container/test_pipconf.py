"""tests/container/pipconf.py: the host's pip index settings, as podman build arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipconf import CERT_TARGET, build_config, effective, local_folder, podman_args

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile"

LISTING = """\
:env:.cert='/etc/ssl/certs/env.pem'
:env:.find-links='/srv/wheels'
global.cert='/etc/ssl/certs/file.pem'
global.constraint='/etc/pip/constraints.txt'
global.extra-index-url='file:///srv/pypi/simple https://mirror.invalid/simple'
global.index-url='https://user:token@mirror.invalid/pypi/simple'
install.no-index='false'
"""


def test_environment_overrides_the_files() -> None:
    sections = effective(LISTING)
    assert sections["global"]["cert"] == "/etc/ssl/certs/env.pem"
    assert sections["global"]["find-links"] == "/srv/wheels"
    assert sections["global"]["constraint"] == "/etc/pip/constraints.txt"
    assert sections["install"] == {"no-index": "false"}
    assert ":env:" not in sections


def test_only_index_settings_pass_and_the_certificate_moves(tmp_path: Path) -> None:
    wheels, pypi = tmp_path / "wheels", tmp_path / "pypi"
    (pypi / "simple").mkdir(parents=True)
    wheels.mkdir()
    sections = {"global": {
        "cert": "/etc/ssl/certs/ca.pem",
        "constraint": "/etc/pip/constraints.txt",
        "find-links": str(wheels),
        "extra-index-url": f"file://{pypi}/simple https://mirror.invalid/simple",
    }}
    text, cert, folders, dropped = build_config(sections)
    assert text.splitlines() == [
        "[global]",
        f"cert = {CERT_TARGET}",
        f"find-links = {wheels}",
        f"extra-index-url = file://{pypi}/simple https://mirror.invalid/simple",
    ]
    assert cert == "/etc/ssl/certs/ca.pem"
    # simple/<project>/index.html links to ../../files/: the tree's root is mounted.
    assert folders == sorted([wheels, pypi])
    assert dropped == ["global.constraint"]


def test_remote_locations_are_not_mounted(tmp_path: Path) -> None:
    assert local_folder("https://mirror.invalid/simple") is None
    assert local_folder("relative/dir") is None
    assert local_folder(str(tmp_path)) == tmp_path
    page = tmp_path / "links.html"
    page.write_text("")
    assert local_folder(f"file://{page}") == tmp_path


def test_podman_arguments(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    args = podman_args(conf, "/etc/ca.pem", [Path("/srv/wheels")])
    assert args == [f"--secret=id=pip.conf,src={conf}", "--secret=id=pip-cert,src=/etc/ca.pem",
                    "--volume=/srv/wheels:/srv/wheels:ro"]
    assert podman_args(conf, None, []) == [f"--secret=id=pip.conf,src={conf}"]


@pytest.mark.parametrize("secret", ["id=pip.conf,target=/etc/pip.conf", "id=pip-cert"])
def test_the_dockerfile_mounts_what_is_passed(secret: str) -> None:
    # A secret without target= is mounted at /run/secrets/<id>: where `cert` points.
    assert f"--mount=type=secret,{secret}" in DOCKERFILE.read_text()
    assert CERT_TARGET == "/run/secrets/pip-cert"
