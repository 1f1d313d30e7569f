"""Which zipproxy is measured: the current tree (HEAD) and, with ``--baseline REV``, the
``zipproxy/`` package of another git revision, extracted once under the workdir.

The baseline runs from the same venv (``python -m zipproxy`` with ``PYTHONPATH`` at the
extracted folder), so only the package differs, not the libraries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, log


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def head_revision() -> str:
    """The short commit of HEAD, with ``+dirty`` when zipproxy/ has uncommitted changes."""
    commit = _git("rev-parse", "--short=10", "HEAD")
    dirty = _git("status", "--porcelain", "--", "zipproxy")
    return commit + ("+dirty" if dirty else "")


def zipproxy_state() -> str:
    """What the proxies import: the tree of zipproxy/ at HEAD, and any uncommitted change to it.
    Each proxy start imports the code of that moment, so the run compares this at its end."""
    return _git("rev-parse", "HEAD:zipproxy") + _git("diff", "HEAD", "--", "zipproxy")


@dataclass(frozen=True)
class Baseline:
    rev: str  # as given on the command line
    sha: str  # short commit
    root: Path  # holds zipproxy/

    @property
    def label(self) -> str:
        return f"base {self.sha}"


def materialise(rev: str, workdir: Path) -> Baseline:
    """``git archive REV zipproxy | tar -x`` into ``workdir/baseline-<sha>`` (kept as a cache),
    then check that ``python -m zipproxy`` there imports that copy, not the current tree."""
    sha = _git("rev-parse", "--short=10", f"{rev}^{{commit}}")
    root = workdir / f"baseline-{sha}"
    if not (root / "zipproxy" / "__init__.py").exists():
        partial = workdir / f"baseline-{sha}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.Popen(["git", "-C", str(REPO), "archive", "--format=tar", sha,
                                    "zipproxy"], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(partial)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {sha} zipproxy failed")
        partial.rename(root)
        log(f"baseline {rev} = {sha}: zipproxy/ extracted to {root}")
    env = {**os.environ, "PYTHONPATH": str(root)}
    where = subprocess.run([sys.executable, "-c", "import zipproxy; print(zipproxy.__file__)"],
                           capture_output=True, text=True, cwd=root, env=env, check=True)
    if not Path(where.stdout.strip()).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"baseline imports {where.stdout.strip()}, not the copy in {root}")
    return Baseline(rev, sha, root)
