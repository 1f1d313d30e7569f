"""Content negotiation for DICOM ZIP retrievals (pure, sans-I/O).

Decides from the ``Accept`` header and the ``accept`` query parameter whether a WADO-RS
retrieval is answered as ``application/zip`` (following DICOM Supplement 211) or passed through
to the upstream unchanged.

Standards: RFC 9110 12.5.1 (Accept), 12.4.2 (quality values), 5.6.2-5.6.6 (tokens, quoted
strings, parameters); PS3.18 8.3.3.1 (``accept`` query parameter, no wildcards, no mixing of
DICOM and rendered media types), 8.7.3.5.2 (``transfer-syntax`` media-type parameter);
PS3.5 9.1 (UID encoding rules).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from zipproxy.errors import BadRequest, NotAcceptable

ZIP = "application/zip"

_TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)  # RFC 9110 5.6.2
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")  # RFC 9110 12.4.2
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")  # PS3.5 9.1
_DICOM = {"application/dicom", "application/dicom+json", "application/dicom+xml", ZIP}
_DICOM |= {"application/octet-stream", "multipart/related"}
_RENDERED_TYPES = frozenset({"image", "video", "text"})
_MULTIPART_DICOM = 'multipart/related; type="application/dicom"'


def _show(value: str, limit: int = 60) -> str:
    """Quote client input for an error reason: ASCII only, controls escaped, truncated."""
    text = ascii(value[: limit + 1])[1:-1]
    return f'"{text[:limit]}"' + ("..." if len(text) > limit else "")


def is_valid_uid(value: str) -> bool:
    """Whether *value* is a UID per PS3.5 9.1: 1..64 characters, dot-separated numeric
    components, no empty component and no leading zero in a multi-digit component."""
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


@dataclass(frozen=True)
class ZipRequest:
    """A retrieval to be answered as a DICOM ZIP (Sup 211).

    ``transfer_syntax`` is None for the upstream default, ``"*"`` for "as stored", else a UID
    (PS3.18 8.7.3.5.2). ``password`` is the unquoted ``password`` media-type parameter (Sup 211
    draft v6); it is kept out of ``repr`` so it does not end up in logs.
    """

    transfer_syntax: str | None
    password: str | None = field(default=None, repr=False)

    def upstream_accept(self) -> str:
        """The Accept header for the upstream multipart retrieval (PS3.18 8.7.3.5.2)."""
        if self.transfer_syntax is None:
            return _MULTIPART_DICOM
        return f"{_MULTIPART_DICOM}; transfer-syntax={self.transfer_syntax}"


@dataclass(frozen=True)
class _Range:
    """One parsed media range; ``q`` in thousandths, ``params`` without ``q``."""

    type: str
    subtype: str
    q: int
    params: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def kind(self) -> str | None:
        """``"dicom"``, ``"rendered"`` or None (neutral), for the PS3.18 8.3.3.1 mixing rule."""
        if self.type in _RENDERED_TYPES or self.name == "application/pdf":
            return "rendered"
        return "dicom" if self.name in _DICOM else None


class _Parser:
    """Parser for ``#( media-range [ weight ] )`` (RFC 9110 12.5.1, 5.6.1, 5.6.6).

    Lenient where RFC 9110 asks recipients to be (empty list elements, empty parameters) and in
    accepting ``q`` anywhere among the parameters; strict everywhere else.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source, self.pos = text, source, 0

    def fail(self, what: str) -> BadRequest:
        near = _show(self.text[max(0, self.pos - 20) :])
        return BadRequest(f"malformed {self.source}: {what} at position {self.pos} near {near}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def token(self, what: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        if start == self.pos:
            raise self.fail(f"expected {what}")
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        """RFC 9110 5.6.4; controls were rejected up front, so qdtext is anything else."""
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.pos == len(self.text):
                    break
                char = self.text[self.pos]
                self.pos += 1
            out.append(char)
        raise self.fail("unbalanced quote")

    def ranges(self) -> list[_Range]:
        result: list[_Range] = []
        while True:
            self.skip_ows()
            if self.pos == len(self.text):
                return result
            if self.peek() == ",":
                self.pos += 1
                continue
            result.append(self.media_range())
            if self.pos < len(self.text):
                if self.peek() != ",":
                    raise self.fail("expected ',' or ';'")
                self.pos += 1

    def media_range(self) -> _Range:
        type_ = self.token("media type").lower()
        if self.peek() != "/":
            raise self.fail("expected '/' and a subtype")
        self.pos += 1
        subtype = self.token("subtype").lower()
        if type_ == "*" and subtype != "*":
            raise self.fail("'*/subtype' is not a media range")
        q: int | None = None
        params: list[tuple[str, str]] = []
        while True:
            self.skip_ows()
            if self.peek() != ";":
                return _Range(type_, subtype, 1000 if q is None else q, tuple(params))
            self.pos += 1
            self.skip_ows()
            if self.peek() in ("", ",", ";"):
                continue  # empty parameter (RFC 9110 5.6.6)
            name = self.token("parameter name").lower()
            if self.peek() != "=":
                raise self.fail(f"expected '=' after parameter {_show(name)}")
            self.pos += 1
            if name == "q":
                value = self.token("q value")
                if q is not None or not _QVALUE.fullmatch(value):
                    raise self.fail(f"bad or repeated q value {_show(value)}")
                whole, _, frac = value.partition(".")
                q = int(whole) * 1000 + int((frac + "000")[:3])
                continue
            value = self.quoted_string() if self.peek() == '"' else self.token("parameter value")
            if name == "transfer-syntax" and any(n == name for n, _ in params):
                raise self.fail("transfer-syntax given twice for one media type (PS3.18 8.7.3.5.2)")
            params.append((name, value))


def _parse(text: str, source: str) -> list[_Range]:
    control = _CONTROL.search(text)
    if control:
        raise BadRequest(f"control character {control.group()!a} in {source}")
    return _Parser(text, source).ranges()


def _choose(ranges: list[_Range], source: str, prefer_zip_on_tie: bool) -> ZipRequest | None:
    """The ZipRequest if an explicit application/zip range wins, else None.

    RFC 9110 12.5.1: the highest q wins; among zip ranges the first of the highest q; a tie with
    another range (wildcards included, though they never select zip) goes to the other unless
    *prefer_zip_on_tie*. Then PS3.18 8.3.3.1 (no mixing of DICOM and rendered types; q=0 ranges
    refuse a type rather than ask for it, so they do not count; wildcards are neutral) and the
    zip parameters: transfer-syntax (PS3.18 8.7.3.5.2), password (Sup 211 draft v6).
    """
    zips = [r for r in ranges if r.name == ZIP]
    if not zips:
        return None
    best = max(zips, key=lambda r: r.q)  # max() keeps the first of equal maxima
    top_other = max((r.q for r in ranges if r.name != ZIP), default=-1)
    wins = best.q > 0 and (best.q > top_other or (best.q == top_other and prefer_zip_on_tie))
    # PS3.18 8.3.3.1: an accept query parameter that asks for zip (q > 0) must not also ask for
    # rendered types, whichever would win; in the Accept header only a winning zip is checked,
    # so headers that merely mention zip keep passing through as before.
    dicom = [r.name for r in ranges if r.q > 0 and r.kind == "dicom"]
    rendered = [r.name for r in ranges if r.q > 0 and r.kind == "rendered"]
    strict = source.startswith("accept query") and best.q > 0
    if (wins or strict) and dicom and rendered:
        raise BadRequest(
            f"{source} mixes DICOM ({_show(dicom[0])}) and rendered ({_show(rendered[0])}) "
            "media types (PS3.18 8.3.3.1)"
        )
    if not wins:
        return None
    transfer_syntax: str | None = None
    password: str | None = None
    for name, value in best.params:
        if name == "transfer-syntax":
            if value != "*" and not is_valid_uid(value):
                raise BadRequest(f"transfer-syntax {_show(value)} is neither '*' nor a valid UID")
            transfer_syntax = value
        elif name == "password" and password is None:
            password = value
        else:
            raise BadRequest(f"unsupported or repeated parameter {_show(name)} on {ZIP}")
    return ZipRequest(transfer_syntax, password)


def _accepts_zip(header: list[_Range]) -> bool:
    """Whether the Accept header admits application/zip: an empty header does; else the most
    specific matching ranges (zip, then application/*, then */*) decide (RFC 9110 12.5.1)."""
    if not header:
        return True
    for name in (ZIP, "application/*", "*/*"):
        weights = [r.q for r in header if r.name == name]
        if weights:
            return max(weights) > 0
    return False


# A "+" inside a media type (application/dicom+json, PS3.18 8.7.3) stays a "+"; elsewhere it is
# a form-encoded space (";+transfer-syntax=*"). Media-type tokens never contain spaces, so a "+"
# between two letters or digits is always part of a subtype.
_SPACE_PLUS: Final = re.compile(r"(?<![A-Za-z0-9])\+|\+(?![A-Za-z0-9])")


def accept_query_values(raw_query: str) -> list[str]:
    """Every value of the ``accept`` query parameter in a raw (percent-encoded) query string.

    A generic query parser turns every ``+`` into a space, which breaks
    ``accept=application/dicom+json`` written unencoded in a link; here only a ``+`` that
    cannot belong to a media type is a space. ``%2B`` is always a ``+``."""
    values = []
    for pair in raw_query.split("&"):
        name, sep, value = pair.partition("=")
        if sep and unquote(name.replace("+", " ")) == "accept":
            values.append(unquote(_SPACE_PLUS.sub(" ", value)))
    return values


def negotiate(
    accept_header: str | None,
    accept_params: list[str],
    *,
    prefer_zip_on_tie: bool = False,
    max_length: int = 4096,
) -> ZipRequest | None:
    """Decide whether a WADO-RS retrieval is answered as a DICOM ZIP.

    *accept_params* holds every value of the ``accept`` query parameter; when present it
    decides (PS3.18 8.3.3.1), else the Accept header does (RFC 9110 12.5.1). Returns a
    ZipRequest when application/zip is chosen, None to pass the request through unchanged.
    Both inputs are always validated. Raises BadRequest (malformed input, too long, wildcard in
    the query parameter, mixed DICOM/rendered types, bad zip parameters) or NotAcceptable
    (query parameter accepts nothing, or zip chosen by it but refused by the Accept header).
    """
    header_text = accept_header or ""
    params_length = sum(map(len, accept_params)) + max(len(accept_params) - 1, 0)
    for what, length in (("Accept header", len(header_text)), ("accept parameter", params_length)):
        if length > max_length:
            raise BadRequest(f"Accept too long: {what} has {length} characters (max {max_length})")
    header = _parse(header_text, "Accept header")
    if not accept_params:
        return _choose(header, "Accept header", prefer_zip_on_tie)
    listed: list[_Range] = []
    for value in accept_params:
        ranges = _parse(value, "accept query parameter")
        if not ranges:
            raise BadRequest("empty accept query parameter")
        wildcard = next((r for r in ranges if "*" in (r.type, r.subtype)), None)
        if wildcard:
            raise BadRequest(
                f"wildcard {_show(wildcard.name)} not allowed in the accept query parameter "
                "(PS3.18 8.3.3.1)"
            )
        listed += ranges
    if all(r.q == 0 for r in listed):
        raise NotAcceptable("the accept query parameter accepts no media type (all q=0)")
    request = _choose(listed, "accept query parameter", prefer_zip_on_tie)
    if request is not None and not _accepts_zip(header):
        raise NotAcceptable(f"accept={ZIP} is not compatible with the Accept header")
    return request
