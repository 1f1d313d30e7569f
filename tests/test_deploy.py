"""deploy/: the Dockerfile, the compose file and the Kubernetes manifests agree with the code.

No Docker engine and no cluster run here, so the files are parsed and checked against what the
code actually reads: the settings table (``zipproxy.config.OPTIONS``) and its parsers, the routes
``create_app`` registers, the console script in pyproject.toml. The image's HEALTHCHECK command
and the probe paths are also run against a real app.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shlex
import sys
import tomllib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from aiohttp import web
from yarl import URL

from zipproxy.app import READY_TIMEOUT, create_app
from zipproxy.config import OPTIONS, Settings, load
from zipproxy.zipresponse import STREAM_BUFFERS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"  # BuildKit: <Dockerfile>.dockerignore
COMPOSE = DEPLOY / "docker-compose.yml"
SIDECAR = DEPLOY / "k8s" / "orthanc-sidecar.yaml"
DCM4CHEE = DEPLOY / "k8s" / "dcm4chee.yaml"
MANIFESTS = (SIDECAR, DCM4CHEE)

DCM4CHEE_BASE = "/dcm4chee-arc/aets/DCM4CHEE/rs"
ORTHANC_HTTP = 8042
NON_ROOT_UID = 10001
MIB = 1 << 20
# One worker's own peak RSS with default limits is about 60-100 MiB; the upper figure is used.
BASELINE_RSS = 100 * MIB

# Variables the zipproxy container gets that are not zipproxy settings: the image's Python and pip
# switches. Any other name in its environment is a setting and must be in OPTIONS.
NOT_SETTINGS: frozenset[str] = frozenset(
    {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PIP_DISABLE_PIP_VERSION_CHECK"})

KNOWN: frozenset[str] = frozenset(opt.env for opt in OPTIONS)
SETTING_NAME = re.compile(r"\bZIPPROXY_[A-Z0-9_]+")

Doc = dict[str, Any]


# --- helpers: names ----------------------------------------------------------------------------


def settings_named(text: str) -> set[str]:
    """Every ZIPPROXY_* name in a text (``ORTHANC__ZIPPROXY_X`` is not one)."""
    return set(SETTING_NAME.findall(text))


def unknown_settings(names: Iterable[str], known: frozenset[str] = KNOWN) -> set[str]:
    """Names that are not a setting zipproxy reads."""
    return set(names) - known


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def get_routes() -> dict[str, set[str]]:
    """Path -> methods, as ``create_app`` registers them."""
    app = create_app(Settings(upstream=URL("http://127.0.0.1:8042")))
    routes: dict[str, set[str]] = {}
    for route in app.router.routes():
        assert route.resource is not None
        routes.setdefault(route.resource.canonical, set()).add(route.method)
    return routes


def assert_get_route(path: str) -> None:
    routes = get_routes()
    assert path.startswith("/-/"), f"{path}: the proxy owns /-/ paths only; others go upstream"
    assert "GET" in routes.get(path, set()), f"{path} is not a GET route of create_app: {routes}"


def project() -> Doc:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image}: pin a tag"
    return tag


# --- helpers: Dockerfile -----------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for args in self.args("ENV"):
            words = shlex.split(args)
            if words and "=" not in words[0]:  # legacy form: ENV NAME value
                env[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                key, _, value = word.partition("=")
                env[key] = value
        return env


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and their instructions: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue  # comments (and parser directives) are dropped, even inside continuations
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if pending or line:
            logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}  # ARGs before the first FROM: only FROM lines see them
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(expand(words[0], global_args), name))
        elif keyword == "ARG" and not stages:
            arg, _, default = args.partition("=")
            global_args[arg] = default
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def expand(word: str, args: Mapping[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced by the ARG's default (build arguments not given)."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in args, f"{word}: ARG {name} is not declared before the first FROM"
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, word)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dockerfile() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def healthcheck_command(stage: Stage) -> list[str]:
    (check,) = stage.args("HEALTHCHECK")
    options, sep, command = check.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {check}"
    assert all(o.startswith("--") for o in options.split()), options
    return exec_form(command)


# --- helpers: .dockerignore --------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignore_patterns(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path or a parent."""
    parts = path.split("/")
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _ignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negate
    return result


# --- helpers: compose and Kubernetes -----------------------------------------------------------


def load_yaml(path: Path) -> list[Doc]:
    with path.open() as f:
        docs = [doc for doc in yaml.safe_load_all(f) if doc is not None]
    assert docs and all(isinstance(doc, dict) for doc in docs), path
    return docs


def compose_env(service: Doc) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    assert all(isinstance(v, str) for v in env.values()), f"quote every value: {env}"
    return dict(env)


def seconds(duration: str | int) -> float:
    """A compose duration (``40s``, ``1m30s``) in seconds."""
    if isinstance(duration, int):
        return duration
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"bad duration {duration!r}"
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def quantity(value: str | int) -> int:
    """A Kubernetes memory quantity in bytes (``128Mi``, ``1G``, ``1048576``)."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    text = str(value)
    for suffix, scale in units.items():
        if text.endswith(suffix):
            return int(text.removesuffix(suffix)) * scale
    return int(text)


@dataclass
class Manifest:
    path: Path
    docs: list[Doc]

    def all(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Doc:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.path.name}: expected one {kind} {name or ''}"
        return found[0]

    @property
    def pod(self) -> Doc:
        return self.one("Deployment")["spec"]["template"]  # type: ignore[no-any-return]

    def container(self, name: str) -> Doc:
        (found,) = [c for c in self.pod["spec"]["containers"] if c["name"] == name]
        return found  # type: ignore[no-any-return]

    def env(self, container: Doc) -> dict[str, str]:
        """The container's environment as Kubernetes builds it (envFrom first, then env).

        An optional secretKeyRef to a key this file does not define is left out, as Kubernetes
        does; a required one must resolve to a Secret in this file.
        """
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            ref = source["configMapRef"]
            env.update(self.one("ConfigMap", ref["name"])["data"])
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            ref = item["valueFrom"]["secretKeyRef"]
            secrets = [s for s in self.all("Secret") if s["metadata"]["name"] == ref["name"]]
            values = {k: v for s in secrets for k, v in s.get("stringData", {}).items()}
            if ref["key"] in values:
                env[item["name"]] = values[ref["key"]]
            else:
                assert ref.get("optional") is True, f"{item['name']}: {ref} resolves nowhere"
        return env

    def settings(self) -> Settings:
        return load([], env=self.env(self.container("zipproxy")))

    def port_number(self, port: str | int) -> int:
        """A port name of any container in the pod, or a number, as a number."""
        if isinstance(port, int):
            return port
        numbers = [p["containerPort"] for c in self.pod["spec"]["containers"]
                   for p in c.get("ports", []) if p.get("name") == port]
        assert len(numbers) == 1, f"port name {port!r} names {numbers}"
        return int(numbers[0])


def manifest(path: Path) -> Manifest:
    return Manifest(path, load_yaml(path))


def pre_stop_sleep(container: Doc) -> int:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is None:
        return 0
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


# --- the settings the deploy files name --------------------------------------------------------


def test_every_setting_named_in_deploy_is_one_zipproxy_reads() -> None:
    seen: set[str] = set()
    for path in deploy_files():
        names = settings_named(path.read_text())
        assert not unknown_settings(names), (
            f"{path.relative_to(ROOT)} names settings zipproxy does not read: "
            f"{sorted(unknown_settings(names))} (zipproxy.config.OPTIONS has {sorted(KNOWN)})"
        )
        seen |= names
    assert {"ZIPPROXY_UPSTREAM", "ZIPPROXY_PORT", "ZIPPROXY_LINK_SECRET"} <= seen


def test_the_name_check_rejects_an_invented_setting() -> None:
    text = "ENV ZIPPROXY_UPSTREAM=http://x ZIPPROXY_UPSTREAM_URL=http://x ORTHANC__ZIPPROXY_NO=1"
    assert settings_named(text) == {"ZIPPROXY_UPSTREAM", "ZIPPROXY_UPSTREAM_URL"}
    assert unknown_settings(settings_named(text)) == {"ZIPPROXY_UPSTREAM_URL"}


def zipproxy_environments() -> dict[str, set[str]]:
    """The variable names each deploy file gives the zipproxy container, from the structure
    (Dockerfile ENV of the runtime stage, compose ``environment``, Kubernetes ``envFrom``
    ConfigMaps and ``env``), whether or not they look like ``ZIPPROXY_*``."""
    envs = {"Dockerfile": set(dockerfile()[-1].env())}
    (compose,) = load_yaml(COMPOSE)
    envs[COMPOSE.name] = set(compose_env(compose["services"]["zipproxy"]))
    for path in MANIFESTS:
        m = manifest(path)
        container = m.container("zipproxy")
        names = {item["name"] for item in container.get("env", [])}
        for source in container.get("envFrom", []):
            names |= set(m.one("ConfigMap", source["configMapRef"]["name"])["data"])
        envs[path.name] = names
    return envs


def test_the_zipproxy_container_gets_only_settings_zipproxy_reads() -> None:
    """A misspelt key (``ZIPROXY_PORT``, ``ZIPPROXY-PORT``) escapes the ZIPPROXY_* text scan
    above and is silently ignored at run time; here every name the container gets is either a
    setting in OPTIONS or one of the few known non-settings, and those are all still used."""
    non_settings: set[str] = set()
    for where, names in zipproxy_environments().items():
        others = names - KNOWN
        assert others <= NOT_SETTINGS, (
            f"{where} gives zipproxy {sorted(others - NOT_SETTINGS)}, which it does not read "
            f"(zipproxy.config.OPTIONS has {sorted(KNOWN)})"
        )
        non_settings |= others
        assert names & KNOWN, f"{where} sets no zipproxy setting at all"
    assert non_settings == NOT_SETTINGS, f"unused in NOT_SETTINGS: {NOT_SETTINGS - non_settings}"


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_builds_a_wheel_and_installs_only_that() -> None:
    stages = dockerfile()
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    assert builder.base == final.base == "python:3.11-slim"
    minimum = project()["requires-python"].removeprefix(">=")
    image_python = re.search(r"python:(\d+\.\d+)", final.base)
    assert image_python is not None
    assert tuple(map(int, image_python[1].split("."))) >= tuple(map(int, minimum.split(".")))
    assert any("pip wheel" in run for run in builder.args("RUN"))
    # What the builder copies exists and survives the context filter.
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    for copy in builder.args("COPY"):
        *sources, _dest = [w for w in copy.split() if not w.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source, patterns), f"{source} is filtered out of the context"
    runs = " ".join(final.args("RUN"))
    assert "pip install" in runs and "--no-index" in runs and "from=builder" in runs
    for tool in ("pip wheel", "apt-get", "gcc", "build-essential", "setup.py"):
        assert tool not in runs, f"the runtime stage must not use {tool}"
    assert not final.args("COPY"), "the runtime stage gets the wheels only (bind mount)"


def test_dockerfile_base_image_is_a_build_argument() -> None:
    # The default (above: python:3.11-slim) serves a Docker host; scripts/container.sh passes a
    # stand-in with --build-arg BASE_IMAGE=... where no registry is reachable.
    froms = re.findall(r"(?m)^FROM\s+(\S+)", DOCKERFILE.read_text())
    assert froms == ["${BASE_IMAGE}", "${BASE_IMAGE}"], froms
    with pytest.raises(AssertionError, match="not declared"):
        parse_dockerfile("FROM ${UNDECLARED}\n")
    (stage,) = parse_dockerfile("ARG B=debian:12\nFROM $B AS x\nARG B\nRUN true\n")
    assert (stage.base, stage.name, stage.args("ARG")) == ("debian:12", "x", ["B"])


def test_dockerfile_pip_settings_are_build_secrets() -> None:
    """The build host's pip settings reach ``pip wheel`` as optional secrets, never as a layer
    or a build argument (an index URL may carry a token)."""
    builder, final = dockerfile()[0], dockerfile()[-1]
    (wheel,) = [run for run in builder.args("RUN") if "pip wheel" in run]
    assert "--mount=type=secret,id=pip.conf,target=/etc/pip.conf" in wheel
    # No target: the secret's default path, /run/secrets/pip-cert (tests/container/pipconf.py).
    assert "--mount=type=secret,id=pip-cert " in wheel
    assert "secret" not in " ".join(final.args("RUN")), "the runtime stage installs offline"
    assert not any(kw == "ARG" for stage in dockerfile() for kw, _ in stage.instructions)


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    final = dockerfile()[-1]
    scripts = project()["scripts"]
    (entrypoint,) = final.args("ENTRYPOINT")
    (script,) = exec_form(entrypoint)
    assert script in scripts, f"ENTRYPOINT {script!r} is not in [project.scripts] {scripts}"
    module, _, function = scripts[script].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert not final.args("CMD"), "configuration is through ZIPPROXY_* variables only"
    user = final.args("USER")[-1]
    assert user.split(":")[0] == str(NON_ROOT_UID), f"USER {user}: numeric, non-root"
    assert f"--uid {NON_ROOT_UID}" in " ".join(final.args("RUN"))
    assert sum(kw == "USER" for kw, _ in final.instructions) == 1


def test_dockerfile_environment_is_a_valid_configuration() -> None:
    final = dockerfile()[-1]
    env = final.env()
    settings = load([], env={**env, "ZIPPROXY_UPSTREAM": "http://orthanc:8042"})
    assert settings.host == "0.0.0.0"
    (exposed,) = final.args("EXPOSE")
    assert int(exposed.split("/")[0]) == settings.port == 8080


def test_dockerfile_healthcheck_asks_the_proxy_with_urllib() -> None:
    command = healthcheck_command(dockerfile()[-1])
    assert command[:2] == ["python", "-c"], "slim has no curl"
    assert "urllib.request" in command[2] and "/-/healthy" in command[2]
    assert_get_route("/-/healthy")


def test_the_build_context_filter() -> None:
    assert DOCKERIGNORE.exists()
    assert not (DEPLOY / ".dockerignore").exists(), (
        "Docker reads .dockerignore only at the root of the context (the repository root); "
        "deploy/Dockerfile.dockerignore is the one it reads for deploy/Dockerfile"
    )
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    wanted = ["pyproject.toml", "README.md"]
    wanted += [p.relative_to(ROOT).as_posix() for p in (ROOT / "zipproxy").rglob("*.py")]
    for path in wanted:
        assert not ignored(path, patterns), f"{path} is needed to build the wheel"
    for path in (".git/HEAD", ".venv/bin/python", "tests/test_config.py", "deploy/Dockerfile",
                 "zipproxy/__pycache__/app.cpython-311.pyc", "demo-data/orthanc.json",
                 "bench/zipbench.py", "zipproxy.egg-info/PKG-INFO", ".mypy_cache/x"):
        assert ignored(path, patterns), f"{path} should stay out of the build context"


def test_the_ignore_matcher_follows_docker() -> None:
    assert ignored("a/b/c", ["a"]) and not ignored("a/b/c", ["*", "!a"])
    assert ignored("x/__pycache__/y.pyc", ["**/__pycache__"])
    assert ignored("__pycache__/y.pyc", ["**/__pycache__"])
    assert not ignored("ab/c", ["a"]) and ignored("m.pyc", ["*.py[cod]"])
    assert not ignored("x/m.py", ["*.py[cod]"]) and ignored("x/m.pyo", ["**/*.py[cod]"])


# --- docker-compose ----------------------------------------------------------------------------


def test_compose_file() -> None:
    (compose,) = load_yaml(COMPOSE)
    services = compose["services"]
    orthanc, proxy = services["orthanc"], services["zipproxy"]

    assert orthanc["image"].startswith("orthancteam/orthanc:") and image_tag(orthanc["image"])
    orthanc_env = compose_env(orthanc)
    assert orthanc_env["DICOM_WEB_PLUGIN_ENABLED"] == "true"
    assert orthanc_env["ORTHANC__AUTHENTICATION_ENABLED"] == "false"
    assert "ports" not in orthanc, "Orthanc is reachable only inside the compose network"

    assert (DEPLOY / proxy["build"]["context"]).resolve() == ROOT
    assert (ROOT / proxy["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert image_tag(proxy["image"]) == project()["version"]

    env = {**dockerfile()[-1].env(), **compose_env(proxy)}
    settings = load([], env=env)
    assert settings.upstream == URL(f"http://orthanc:{ORTHANC_HTTP}")
    assert settings.upstream.host in services
    (published,) = proxy["ports"]
    *host, container = str(published).split(":")
    assert int(container.split("/")[0]) == settings.port, "publish the port zipproxy listens on"
    assert host[-1] == "8080"
    assert seconds(proxy["stop_grace_period"]) > settings.shutdown_grace
    assert proxy["read_only"] is True and proxy["cap_drop"] == ["ALL"]


# --- Kubernetes --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_objects_are_well_formed(path: Path) -> None:
    m = manifest(path)
    seen = set()
    for doc in m.docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
    for config_map in m.all("ConfigMap"):
        data = config_map["data"]
        assert all(isinstance(v, str) for v in data.values()), f"quote ConfigMap values: {data}"
    for secret in m.all("Secret"):
        assert "link-secret" not in secret.get("stringData", {}), (
            "never commit a link secret: anyone who reads it can forge download links"
        )
        assert "data" not in secret
    annotations = m.pod["metadata"]["annotations"]
    assert all(isinstance(v, str) for v in annotations.values()), annotations


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_zipproxy_container(path: Path) -> None:
    m = manifest(path)
    container = m.container("zipproxy")
    settings = m.settings()  # the environment the container gets parses as a configuration
    assert settings.host == "0.0.0.0", "probes and the Service reach the pod IP"
    assert image_tag(container["image"]) == project()["version"]
    assert container["image"].split(":")[0].endswith("zipproxy")
    assert "args" not in container and "command" not in container

    (port,) = container["ports"]
    assert port["containerPort"] == settings.port and port["name"] == "http"

    env = {item["name"]: item for item in container["env"]}
    for name in ("ZIPPROXY_UPSTREAM_AUTH", "ZIPPROXY_LINK_SECRET"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["optional"] is True, f"{name}: optional secretKeyRef"

    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["httpGet"]["path"] == "/-/healthy"
    assert ready["httpGet"]["path"] == "/-/ready"
    for probe in (live, ready):
        assert_get_route(probe["httpGet"]["path"])
        assert m.port_number(probe["httpGet"]["port"]) == settings.port
    assert ready["timeoutSeconds"] > READY_TIMEOUT, "let /-/ready answer 503 itself"

    annotations = m.pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.port)
    assert annotations["prometheus.io/path"] == "/-/metrics"
    assert_get_route(annotations["prometheus.io/path"])


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_zipproxy_security_context(path: Path) -> None:
    m = manifest(path)
    sc = m.container("zipproxy")["securityContext"]
    pod_sc = m.pod["spec"].get("securityContext", {})
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == NON_ROOT_UID == int(dockerfile()[-1].args("USER")[-1])
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile")
    assert seccomp == {"type": "RuntimeDefault"}
    assert m.pod["spec"]["automountServiceAccountToken"] is False
    # A Service named "zipproxy" would otherwise inject ZIPPROXY_PORT=tcp://... into the pod.
    assert m.pod["spec"]["enableServiceLinks"] is False


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_zipproxy_memory_is_sized_from_its_settings(path: Path) -> None:
    m = manifest(path)
    settings = m.settings()
    resources = m.container("zipproxy")["resources"]
    request = quantity(resources["requests"]["memory"])
    limit = quantity(resources["limits"]["memory"])
    # A stream's held instance and header budget, and its I/O buffers (zipresponse).
    per_stream = settings.hold_limit + settings.header_limit + STREAM_BUFFERS
    worst = settings.workers * (BASELINE_RSS + settings.max_streams * per_stream)
    assert (request, limit) == (144 * MIB, 704 * MIB)
    assert per_stream == 18.5 * MIB and settings.max_streams == 32 and worst == 692 * MIB
    assert limit >= worst, f"limit {limit / MIB} MiB < {worst / MIB} MiB the settings allow"
    assert request >= settings.workers * (BASELINE_RSS + 2 * per_stream)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_termination_outlasts_the_shutdown_grace(path: Path) -> None:
    m = manifest(path)
    settings = m.settings()
    drain = pre_stop_sleep(m.container("zipproxy")) + settings.shutdown_grace
    assert m.pod["spec"]["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_service_targets_zipproxy_only(path: Path) -> None:
    m = manifest(path)
    service = m.one("Service")
    labels = m.pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert m.one("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    zipproxy_ports = {p["containerPort"] for p in m.container("zipproxy")["ports"]}
    for port in service["spec"]["ports"]:
        target = m.port_number(port["targetPort"])
        assert target in zipproxy_ports and target == m.settings().port
        assert target != ORTHANC_HTTP and port["port"] != ORTHANC_HTTP


def test_sidecar_reaches_orthanc_on_loopback() -> None:
    m = manifest(SIDECAR)
    settings = m.settings()
    orthanc = m.container("orthanc")
    assert orthanc["image"].startswith("orthancteam/orthanc:") and image_tag(orthanc["image"])
    assert settings.upstream == URL(f"http://127.0.0.1:{ORTHANC_HTTP}")
    assert m.port_number("orthanc-http") == settings.upstream.port
    orthanc_env = m.env(orthanc)
    assert orthanc_env["DICOM_WEB_PLUGIN_ENABLED"] == "true"
    assert orthanc_env["ORTHANC__REMOTE_ACCESS_ALLOWED"] == "false"
    assert orthanc_env["ORTHANC__AUTHENTICATION_ENABLED"] == "true"
    # The proxy's own upstream user (signed links) is one of Orthanc's users.
    user, _, password = m.env(m.container("zipproxy"))["ZIPPROXY_UPSTREAM_AUTH"].partition(":")
    assert json.loads(orthanc_env["ORTHANC__REGISTERED_USERS"])[user] == password
    # Orthanc keeps serving until zipproxy's in-flight ZIPs are done, within the pod's grace.
    drain = pre_stop_sleep(m.container("zipproxy")) + settings.shutdown_grace
    assert drain <= pre_stop_sleep(orthanc) < m.pod["spec"]["terminationGracePeriodSeconds"]
    # Only zipproxy's port is open to the cluster.
    (policy,) = m.all("NetworkPolicy")
    pod_labels = m.pod["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    opened = {m.port_number(p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert opened == {settings.port}


def test_dcm4chee_upstream_keeps_its_base_path() -> None:
    from zipproxy.upstream import Upstream

    settings = manifest(DCM4CHEE).settings()
    assert settings.upstream.host == "arc.example.internal" and settings.upstream.port == 8080
    assert settings.upstream.path == DCM4CHEE_BASE
    url = Upstream(None, settings.upstream).url("/studies/1.2.3")  # type: ignore[arg-type]
    assert str(url) == f"http://arc.example.internal:8080{DCM4CHEE_BASE}/studies/1.2.3"


# --- the probes and the HEALTHCHECK against a running app -------------------------------------


@pytest.fixture
async def running_app() -> AsyncIterator[int]:
    """A real app on a free loopback port; its upstream (port 1) refuses connections."""
    app = create_app(Settings(upstream=URL("http://127.0.0.1:1")))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def run_healthcheck(port: int) -> int:
    command = healthcheck_command(dockerfile()[-1])
    env: Mapping[str, str] = {**os.environ, "ZIPPROXY_PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(sys.executable, *command[1:], env=env,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), timeout=30)


async def test_probes_and_healthcheck_against_the_app(running_app: int) -> None:
    port = running_app
    assert await run_healthcheck(port) == 0
    async with aiohttp.ClientSession() as session:
        for path, status in (("/-/healthy", 200), ("/-/ready", 503), ("/-/metrics", 200)):
            async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                assert resp.status == status, path


async def test_the_healthcheck_can_fail() -> None:
    app = create_app(Settings(upstream=URL("http://127.0.0.1:1")))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()  # nothing listens on that port any more
    assert await run_healthcheck(port) != 0
