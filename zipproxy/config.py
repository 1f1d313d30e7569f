"""Settings: one table drives the CLI flags, the environment variables and the README table.

Every setting is a flag ``--name`` and an environment variable ``ZIPPROXY_NAME``; a flag wins over
the environment, the environment over the default. A bad value fails at start-up with one line.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final

from yarl import URL


def _url(value: str) -> URL:
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"expected an http(s) URL with a host, got {value!r}")
    if url.user or url.password:
        raise ValueError("put upstream credentials in --upstream-auth, not in the URL")
    if url.query_string or url.fragment:
        raise ValueError("the upstream URL takes no query or fragment")
    return url.with_path(url.path.rstrip("/"))


def _public_url(value: str) -> str:
    """Empty, or an http(s) URL without query: where clients reach the proxy."""
    if not value:
        return ""
    url = URL(value)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise ValueError(f"expected an http(s) URL with a host and no query, got {value!r}")
    if url.user or url.password:
        raise ValueError("the public URL takes no credentials")
    return str(url).rstrip("/")


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from ``low`` to ``high`` (None: no upper bound)."""
    def parse(value: str) -> int:
        number = int(value)
        if number < low or (high is not None and number > high):
            span = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be a whole number {span}, got {number}")
        return number

    return parse


_port = _int_in(0, 65535)
_positive_int = _int_in(1)
_level = _int_in(0, 9)  # zlib's deflate levels
_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


def _seconds(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"must be a positive number of seconds, got {value}")
    return number


def _size(value: str) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1024)."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    number = int(text[:-1] if scale > 1 else text) * scale
    if number < 1:
        raise ValueError(f"must be a positive size, got {value}")
    return number


def _size_or_off(value: str) -> int:
    """A size as for :func:`_size`, or 0 (no limit)."""
    return 0 if value.strip() == "0" else _size(value)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def manifest_choice(value: str) -> str | None:
    """MANIFEST.CSV's checksum: "crc32" (true), "sha256", "" (false: no manifest); None if
    ``value`` is none of these."""
    lowered = value.strip().lower()
    if lowered in ("crc32", "sha256"):
        return lowered
    if lowered in _TRUE:
        return "crc32"
    if lowered in _FALSE:
        return ""
    return None


def _manifest(value: str) -> str:
    choice = manifest_choice(value)
    if choice is None:
        raise ValueError(f"expected true (crc32), sha256 or false, got {value!r}")
    return choice


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _auth(value: str) -> str:
    if value and ":" not in value:
        raise ValueError("expected user:password")
    return value


@dataclass(frozen=True)
class Option:
    name: str  # attribute name; flag --name-with-dashes; env ZIPPROXY_NAME
    parse: Callable[[str], Any]
    default: str | None  # None = required
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "ZIPPROXY_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("upstream", _url, None, "DICOMweb origin: scheme, host, port, optional base path"),
    Option("host", str, "127.0.0.1", "address to listen on"),
    Option("port", _port, "8080", "port to listen on"),
    Option("workers", _positive_int, "1", "processes sharing the port (SO_REUSEPORT)"),
    Option("prefer_zip_on_tie", _bool, "false",
           "when application/zip and another type have the same q, answer a ZIP"),
    Option("max_streams", _positive_int, "32",
           "concurrent ZIP streams per worker; beyond it 503 with Retry-After"),
    Option("max_collection", _positive_int, "100",
           "studies (or series) one collection ZIP may hold; a search matching more gets 413"),
    Option("max_collection_instances", _positive_int, "100000",
           "instances one collection ZIP may hold, from the upstream's QIDO counts; 413 beyond"),
    Option("max_collection_bytes", _size_or_off, "0",
           "bytes one collection ZIP may hold, measured before the first byte (see "
           "--collection-sizes); 413 beyond; 0 = no byte limit"),
    Option("collection_sizes", _choice("auto", "orthanc", "qido"), "auto",
           "where collection sizes come from: orthanc (its REST statistics, exact), qido "
           "(estimated from instance-level QIDO-RS, any origin), auto (orthanc if the upstream "
           "is Orthanc)"),
    Option("header_limit", _size, "4M",
           "bytes of directory-key sequences kept per instance (a larger one is left out of "
           "its DICOMDIR record); no instance is ever refused for its size"),
    Option("hold_limit", _size, "8M",
           "instances up to this size are held whole and STORED; larger ones stream as deflate-0"),
    Option("deflate_level", _level, "0", "deflate level for streamed (large) entries"),
    Option("manifest", _manifest, "true",
           "MANIFEST.CSV, one row per instance with its size and CRC-32: true (crc32), sha256 "
           "(adds a SHA-256 column) or false; ?manifest= per request"),
    Option("spool_dir", str, "", "directory for what a large ZIP keeps until its end "
           "(central directory, DICOMDIR and manifest rows), in unlinked temporary files; "
           "empty = $TMPDIR or /tmp"),
    Option("password_min_length", _positive_int, "8",
           "shortest password accepted for an encrypted (AES-256) ZIP"),
    Option("password_query", _bool, "false",
           "accept ?password= in the URL (URLs end up in histories and logs: off by default)"),
    Option("connect_timeout", _seconds, "10", "seconds to connect to the upstream"),
    Option("read_timeout", _seconds, "60",
           "seconds without progress: upstream headers, body bytes or an upload taken; a "
           "client accepting no bytes of its answer"),
    Option("shutdown_grace", _seconds, "30",
           "on SIGTERM, seconds in-flight ZIPs may take before they are aborted"),
    Option("upstream_auth", _auth, "", "user:password the proxy sends upstream when the client "
           "sends no Authorization (signed links)"),
    Option("link_secret", str, "", "secret that signs download links (POST /-/links); empty "
           "disables signed links; share it between workers and replicas"),
    Option("link_ttl", _seconds, "900", "seconds a signed download link stays valid"),
    Option("public_url", _public_url, "", "URL clients reach the proxy at, e.g. "
           "https://pacs.example.org behind a TLS ingress; signed links start with it; empty = "
           "the request's own scheme and Host"),
    Option("log_format", _choice("json", "text"), "json", "log line format"),
    Option("log_level", _choice("debug", "info", "warning", "error"), "info", "log level"),
)


@dataclass(frozen=True)
class Settings:
    upstream: URL
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    prefer_zip_on_tie: bool = False
    max_streams: int = 32
    max_collection: int = 100
    max_collection_instances: int = 100_000
    max_collection_bytes: int = 0
    collection_sizes: str = "auto"
    header_limit: int = 4 << 20
    hold_limit: int = 8 << 20
    deflate_level: int = 0
    manifest: str = "crc32"
    spool_dir: str = ""
    password_min_length: int = 8
    password_query: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    shutdown_grace: float = 30.0
    upstream_auth: str = ""
    link_secret: str = ""
    link_ttl: float = 900.0
    public_url: str = ""
    log_format: str = "json"
    log_level: str = "info"


class ConfigError(ValueError):
    """A setting has a bad value; the message is one line naming the flag and the variable."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zipproxy",
        description="Serve DICOM ZIPs (application/zip, after DICOM Sup 211) in front of a "
        "DICOMweb server; pass every other request through.",
        epilog="To download a cohort through a running zipproxy: zipproxy fetch --help",
    )
    for opt in OPTIONS:
        default = "required" if opt.default is None else opt.default or '""'
        parser.add_argument(opt.flag, dest=opt.name, metavar=opt.name.split("_")[-1].upper(),
                            help=f"{opt.help} (env {opt.env}; default {default})")
    return parser


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags, then environment, then defaults."""
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = getattr(args, opt.name)
        source = opt.flag
        if raw is None and opt.env in env:
            raw, source = env[opt.env], opt.env
        if raw is None:
            if opt.default is None:
                raise ConfigError(f"{opt.flag} (or {opt.env}) is required")
            raw, source = opt.default, "default"
        try:
            values[opt.name] = opt.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"bad value for {opt.flag} / {opt.env} ({source}): {exc}") from exc
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values)
