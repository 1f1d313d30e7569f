"""The command line of ``zipproxy fetch`` and what it turns into: options, headers, secrets."""

from __future__ import annotations

import argparse
import base64
import getpass
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from multidict import CIMultiDict
from yarl import URL

from .. import __version__
from ..negotiation import is_valid_uid
from .errors import UsageError
from .layout import DEFAULT_LAYOUT, Layout, parse_layout
from .search import Target, parse_target

_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 5.6.2 field name
# Headers whose values are credentials: they are redacted from every line printed.
_SECRET_HEADER: Final = re.compile(r"auth|cookie|token|key|secret|session|password", re.I)

USAGE: Final = """\
Download every study a QIDO-RS search finds, through a zipproxy, one verified ZIP per study.

  zipproxy fetch 'http://127.0.0.1:8080/dicom-web/studies?ModalitiesInStudy=CT' --out cohort

Each study (or series, for a search of a study's series) is fetched as a DICOM ZIP, --jobs at a
time, and verified (every CRC-32, every MANIFEST.CSV checksum and size, the DICOMDIR lists every
instance, the instance count equals the search's) before it gets its final name in DIR. DIR/
cohort.csv indexes every instance. Rerun the same command to resume: verified studies are
skipped without a request. Exit status: 0 when every match is verified, 1 when one is missing,
2 for a usage error, 130 after Ctrl-C.
"""


@dataclass(frozen=True)
class Options:
    target: Target
    out: Path
    jobs: int
    transfer_syntax: str
    layout: Layout | None  # set with --extract
    headers: CIMultiDict[str]  # sent on every request
    secrets: tuple[str, ...]  # never printed
    retries: int
    retry_wait: float
    sha256: bool
    quiet: bool
    page_size: int
    read_timeout: float


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zipproxy fetch", description=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("search_url", metavar="SEARCH_URL",
                   help="QIDO-RS search through a zipproxy: …/studies?filters or "
                   "…/studies/{uid}/series?filters (limit/offset there take a slice)")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="DIR",
                   help="folder for the ZIPs (or files), cohort.csv and the resume records")
    p.add_argument("-j", "--jobs", type=_positive, default=4, metavar="N",
                   help="downloads at a time (default 4)")
    p.add_argument("--transfer-syntax", default="*", metavar="TS",
                   help="UID the instances are transcoded to, or * for as stored, byte for "
                   "byte (default *)")
    p.add_argument("--extract", action="store_true",
                   help="write the instances as files laid out by --layout instead of ZIPs")
    p.add_argument("--layout", metavar="TEMPLATE",
                   help=f"with --extract: path of each instance below DIR, DICOM keywords of "
                   f"MANIFEST.CSV in braces (default {DEFAULT_LAYOUT.replace('%', '%%')})")
    p.add_argument("-u", "--user", metavar="U:P",
                   help="HTTP basic auth; U alone asks for the password")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'",
                   help="header sent on every request (repeatable), e.g. "
                   "'Authorization: Bearer …'")
    p.add_argument("--retries", type=_natural, default=3, metavar="N",
                   help="attempts after the first for a failing study (default 3)")
    p.add_argument("--retry-wait", type=float, default=1.0, metavar="SECONDS",
                   help="first wait before a retry; doubles each time, at most 60 (default 1)")
    p.add_argument("--checksum", choices=("manifest", "sha256"), default="manifest",
                   help="manifest: verify the checksum columns the proxy writes; sha256: ask "
                   "for SHA-256 too (?manifest=sha256) and verify it (default manifest)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--page-size", type=_positive, default=1000, metavar="N",
                   help="matches asked per search page (default 1000)")
    p.add_argument("--read-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="idle seconds on a connection before the attempt fails (default 300)")
    p.add_argument("--version", action="version", version=f"zipproxy {__version__}")
    return p


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _natural(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def parse(argv: Sequence[str]) -> Options:
    """Options from the command line; :class:`UsageError` for what argparse cannot check."""
    args = build_parser().parse_args(argv)
    if args.layout is not None and not args.extract:
        raise UsageError("--layout needs --extract (without it every study stays a ZIP)")
    if args.transfer_syntax != "*" and not is_valid_uid(args.transfer_syntax):
        raise UsageError(f"--transfer-syntax must be a UID or *, got {args.transfer_syntax!r}")
    if not args.retry_wait >= 0 or not args.read_timeout > 0:
        raise UsageError("--retry-wait must be 0 or more and --read-timeout more than 0")
    url = URL(args.search_url)
    headers, secrets = _headers(args.header, args.user, url)
    return Options(
        target=parse_target(args.search_url), out=args.out, jobs=args.jobs,
        transfer_syntax=args.transfer_syntax,
        layout=parse_layout(args.layout or DEFAULT_LAYOUT) if args.extract else None,
        headers=headers, secrets=secrets, retries=args.retries, retry_wait=args.retry_wait,
        sha256=args.checksum == "sha256", quiet=args.quiet, page_size=args.page_size,
        read_timeout=args.read_timeout,
    )


def _headers(raw: list[str], user: str | None,
             url: URL) -> tuple[CIMultiDict[str], tuple[str, ...]]:
    """Every request's headers and the secrets among them. Credentials may come from --user,
    from the URL (``http://u:p@host/…``, as curl takes them) or from an Authorization header;
    one of them at most."""
    headers: CIMultiDict[str] = CIMultiDict({"User-Agent": f"zipproxy-fetch/{__version__}"})
    secrets: list[str] = []
    for item in raw:
        name, sep, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not _TOKEN.match(name) or any(c in value for c in "\r\n\0"):
            raise UsageError("--header takes 'Name: value' (one line)")
        headers.add(name, value)
        if _SECRET_HEADER.search(name):
            secrets += [value, *value.split()[1:]]  # "Bearer <token>": the token alone too
    # A token in the search URL's query (access_token=…) is a secret as well.
    secrets += [v for k, v in url.query.items() if _SECRET_HEADER.search(k)]
    if url.user is not None:
        if user is not None:
            raise UsageError("give credentials once: --user or in SEARCH_URL")
        user = f"{url.user}:{url.password or ''}"
    if user is not None:
        if "Authorization" in headers:
            raise UsageError("give credentials once: --user or an Authorization header")
        name, sep, password = user.partition(":")
        if not sep:
            password = getpass.getpass(f"password for {name}: ")
        token = base64.b64encode(f"{name}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
        secrets += [password, token, f"{name}:{password}"]
    return headers, tuple(secrets)
