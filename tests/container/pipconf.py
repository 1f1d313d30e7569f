"""The build host's pip index settings, handed to ``podman build`` for deploy/Dockerfile.

pip inside the image build must reach the same package index as pip on this machine: an index
mirror, extra (possibly ``file://``) indexes, ``find-links`` folders, and the CA certificate of a
TLS-inspecting proxy. The Dockerfile's builder stage mounts two optional build secrets for its
``pip wheel`` step (``pip.conf`` at /etc/pip.conf, ``pip-cert`` at /run/secrets/pip-cert), so
nothing of it lands in a layer, the image history or a build argument (an index URL may carry a
token). This module turns the host's effective settings into those two secrets plus read-only
bind mounts (``podman build --volume``) for the local folders they name. No host is named here:
everything comes from ``pip config list`` (pip's config files and ``PIP_*`` variables).

    python tests/container/pipconf.py OUTDIR     # writes OUTDIR/pip.conf, prints podman args

Only index settings are passed on (:data:`PASSED`); others (``constraint``, ``cache-dir``, ...)
belong to this machine's own installs and are listed on stderr as not passed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Where the Dockerfile mounts the ``pip-cert`` secret (its default secret path).
CERT_TARGET = "/run/secrets/pip-cert"

#: pip options that decide where packages come from and how pip talks to the index.
PASSED = frozenset({
    "index-url", "extra-index-url", "find-links", "no-index", "trusted-host", "cert", "proxy",
    "timeout", "default-timeout", "retries",
})
#: Options whose value is a list of locations (space separated in a config file).
LOCATIONS = frozenset({"index-url", "extra-index-url", "find-links"})


def effective(listing: str) -> dict[str, dict[str, str]]:
    """``pip config list`` output as ``{section: {option: value}}``.

    pip merges its config files per key already; ``PIP_*`` variables show up in the section
    ``:env:`` and override ``global`` (pip reads sections global, then the command's, then env).
    """
    sections: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    for line in listing.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        section, _, option = key.rpartition(".")
        value = ast.literal_eval(raw)  # pip prints repr() of the value
        if section == ":env:":
            env[option] = value
        else:
            sections.setdefault(section, {})[option] = value
    if env:
        sections["global"] = {**sections.get("global", {}), **env}
    return sections


def local_folder(location: str) -> Path | None:
    """The folder a find-links or index location reads from this machine (None: remote)."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
    elif not parts.scheme and location.startswith("/"):
        path = Path(location)
    else:
        return None
    if not path.is_dir():
        path = path.parent  # a find-links file, or a single index page
    # A PEP 503 tree such as DIR/simple/<project>/index.html links to ../../files/...: the
    # files live beside simple/, so the tree's root is mounted.
    return path.parent if path.name == "simple" else path


def build_config(
    sections: Mapping[str, Mapping[str, str]],
) -> tuple[str, str | None, list[Path], list[str]]:
    """(pip.conf text, CA file to pass as ``pip-cert``, folders to mount, options left out)."""
    lines: list[str] = []
    cert: str | None = None
    folders: list[Path] = []
    dropped: list[str] = []
    for section, options in sections.items():
        kept: list[str] = []
        for option, value in options.items():
            if option not in PASSED:
                dropped.append(f"{section}.{option}")
                continue
            if option == "cert":
                cert, value = value, CERT_TARGET
            elif option in LOCATIONS:
                folders += [f for f in map(local_folder, value.split()) if f is not None]
            kept.append(f"{option} = {value}")
        if kept:
            lines += [f"[{section}]", *kept, ""]
    unique = sorted(set(folders))
    return "\n".join(lines), cert, unique, dropped


def podman_args(conf: Path, cert: str | None, folders: Iterable[Path]) -> list[str]:
    args = [f"--secret=id=pip.conf,src={conf}"]
    if cert:
        args.append(f"--secret=id=pip-cert,src={cert}")
    # The same path inside the build, so the settings' own paths stay right; read-only.
    args += [f"--volume={folder}:{folder}:ro" for folder in folders]
    return args


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True, text=True, check=True,
    ).stdout
    text, cert, folders, dropped = build_config(effective(listing))
    out.mkdir(parents=True, exist_ok=True)
    conf = out / "pip.conf"
    conf.write_text(text)
    if dropped:
        print(f"pipconf: not passed to the build: {', '.join(sorted(dropped))}", file=sys.stderr)
    print("\n".join(podman_args(conf, cert, folders)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
