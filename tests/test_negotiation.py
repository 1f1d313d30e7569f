"""Tests for zipproxy.negotiation (RFC 9110 12.5.1, PS3.18 8.3.3.1 / 8.7.3.5.2, PS3.5 9.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zipproxy.errors import BadRequest, NotAcceptable
from zipproxy.negotiation import ZIP, ZipRequest, accept_query_values, is_valid_uid, negotiate

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG = "1.2.840.10008.1.2.4.50"
MULTIPART = 'multipart/related; type="application/dicom"'
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

Expected = ZipRequest | type[Exception] | None


def check(expected: Expected, header: str | None, params: list[str], prefer: bool = False) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected) as info:
            negotiate(header, params, prefer_zip_on_tie=prefer)
        assert isinstance(info.value, BadRequest | NotAcceptable)
        assert info.value.reason
    else:
        assert negotiate(header, params, prefer_zip_on_tie=prefer) == expected


# --- Accept header only (rule 3) ----------------------------------------------------------------

HEADER_CASES: list[tuple[str | None, Expected]] = [
    (None, None),
    ("", None),
    ("  \t ", None),
    (" , ,", None),
    ("application/dicom", None),
    (MULTIPART, None),
    ("application/dicom+json", None),
    ("*/*", None),
    ("application/*", None),
    (CHROME, None),
    (FIREFOX, None),
    ("application/zip", ZipRequest(None)),
    ("APPLICATION/Zip", ZipRequest(None)),
    (" ,application/zip,, ", ZipRequest(None)),
    ("application/zip;", ZipRequest(None)),
    ("application/zip; transfer-syntax=*", ZipRequest("*")),
    (f"application/zip;transfer-syntax={JPEG}", ZipRequest(JPEG)),
    (f'application/zip; transfer-syntax="{EXPLICIT_LE}"', ZipRequest(EXPLICIT_LE)),
    ("application/zip;Transfer-Syntax=*", ZipRequest("*")),
    ("application/zip\t;\tq=0.5 ; transfer-syntax=*", ZipRequest("*")),
    # q-values and ties
    (f"application/zip, {MULTIPART}", None),
    (f"application/zip, {MULTIPART};q=0.9", ZipRequest(None)),
    ("application/zip;q=0.5, application/dicom;q=0.6", None),
    ("application/zip;q=0.5, application/dicom;q=0.4", ZipRequest(None)),
    ("application/zip;q=0.001", ZipRequest(None)),
    ("application/zip;q=1.000, application/dicom;q=0.999", ZipRequest(None)),
    ("application/zip;q=1., application/dicom;q=0.", ZipRequest(None)),
    ("application/zip;q=0", None),
    ("application/zip;q=0.000, application/dicom;q=0", None),
    ("application/zip, application/dicom;q=0", ZipRequest(None)),
    # wildcards never select zip but count in ties
    ("application/zip, */*", None),
    ("application/zip, application/*;q=1", None),
    ("application/zip, */*;q=0.1", ZipRequest(None)),
    ("application/zip;q=0.5, */*", None),
    # several zip entries: highest q wins, first on ties
    (
        f"application/zip;transfer-syntax={EXPLICIT_LE};q=0.5, application/zip;transfer-syntax=*",
        ZipRequest("*"),
    ),
    (f"application/zip;transfer-syntax=*, application/zip;transfer-syntax={JPEG}", ZipRequest("*")),
    # quoted strings: commas and semicolons do not split; quoted-pair unescapes
    ('application/zip;password="a,b;c", application/dicom;q=0.5', ZipRequest(None, "a,b;c")),
    ('application/zip;password="x\\"y\\\\z\\q"', ZipRequest(None, 'x"y\\zq')),
    ("application/zip;password=s3cr3t;transfer-syntax=*", ZipRequest("*", "s3cr3t")),
    ('application/zip;password=""', ZipRequest(None, "")),
    ('application/zip;password="caf\u00e9 \t"', ZipRequest(None, "caf\u00e9 \t")),
    # mixing DICOM and rendered types (rule 4) only matters when zip is selected
    ("text/html, application/zip", None),
    ("application/zip, text/html;q=0.9", BadRequest),
    ("application/zip, image/jpeg;q=0.5", BadRequest),
    ("application/zip, image/*;q=0.5", BadRequest),
    ("application/zip, video/mp4;q=0.5", BadRequest),
    ("application/zip, application/pdf;q=0.5", BadRequest),
    ("application/zip, image/jpeg;q=0", ZipRequest(None)),
    ("application/zip, application/json;q=0.5", ZipRequest(None)),
    ("application/zip, */*;q=0.5, application/*;q=0.4", ZipRequest(None)),
    # parameters on application/zip (rule 5)
    ("application/zip;transfer-syntax=1.2.abc", BadRequest),
    ("application/zip;transfer-syntax=01.2", BadRequest),
    ("application/zip;transfer-syntax=1..2", BadRequest),
    ('application/zip;transfer-syntax=""', BadRequest),
    ("application/zip;transfer-syntax=**", BadRequest),
    ("application/zip;transfer-syntax=*;transfer-syntax=*", BadRequest),
    ("application/dicom;transfer-syntax=*;transfer-syntax=1.2", BadRequest),
    ("application/zip;foo=bar", BadRequest),
    ("application/zip;type=application/dicom", BadRequest),
    ("application/zip;password=a;password=b", BadRequest),
    # malformed (rule 1)
    ("application", BadRequest),
    ("application/", BadRequest),
    ("/zip", BadRequest),
    ("*/zip", BadRequest),
    ("application /zip", BadRequest),
    ("application/zip x", BadRequest),
    ("application/zip;foo", BadRequest),
    ("application/zip;foo=", BadRequest),
    ("application/zip;=bar", BadRequest),
    ('application/zip;password="abc', BadRequest),
    ('application/zip;password="abc\\', BadRequest),
    ('application/zip;password="a"b', BadRequest),
    ("application/zip;q = 0.5", BadRequest),
    ("application/zip;q=", BadRequest),
    ("application/zip;q=1.5", BadRequest),
    ("application/zip;q=1.0001", BadRequest),
    ("application/zip;q=0.1234", BadRequest),
    ("application/zip;q=-1", BadRequest),
    ("application/zip;q=.5", BadRequest),
    ('application/zip;q="0.5"', BadRequest),
    ("application/zip;q=0.5;q=0.5", BadRequest),
    ("application/dicom;q=2", BadRequest),
    ("ap(p)/zip", BadRequest),
    ("application/zip\x00", BadRequest),
    ("application/zip\r\n", BadRequest),
    ('application/zip;password="a\x01"', BadRequest),
    ("application/zip\x7f", BadRequest),
    ("application/zip;q=0.5 text/html", BadRequest),
    ("application/\u00e9", BadRequest),
    (";q=0.5", BadRequest),
]


@pytest.mark.parametrize(("header", "expected"), HEADER_CASES)
def test_header(header: str | None, expected: Expected) -> None:
    check(expected, header, [])


TIE_CASES: list[tuple[str | None, list[str], Expected, Expected]] = [
    # header, params, expected without / with prefer_zip_on_tie
    (f"application/zip, {MULTIPART}", [], None, ZipRequest(None)),
    ("application/zip, */*", [], None, ZipRequest(None)),
    ("application/*, application/zip;transfer-syntax=*", [], None, ZipRequest("*")),
    ("application/zip;q=0.5, application/dicom;q=0.5", [], None, ZipRequest(None)),
    ("text/html, application/zip", [], None, BadRequest),
    ("application/zip;q=0, application/dicom;q=0", [], None, None),
    ("application/zip;q=0.4, application/dicom;q=0.5", [], None, None),
    (None, ["application/zip", "application/dicom"], None, ZipRequest(None)),
    (None, ["application/dicom, application/zip;transfer-syntax=*"], None, ZipRequest("*")),
    (None, ["application/zip;q=0.3,application/dicom;q=0.3"], None, ZipRequest(None)),
    (None, ["application/zip;q=0.3,application/dicom;q=0.4"], None, None),
    (None, ["application/zip", "image/jpeg"], BadRequest, BadRequest),
]


@pytest.mark.parametrize(("header", "params", "plain", "preferred"), TIE_CASES)
def test_ties(header: str | None, params: list[str], plain: Expected, preferred: Expected) -> None:
    check(plain, header, params, prefer=False)
    check(preferred, header, params, prefer=True)


# --- accept query parameter (rule 2) ------------------------------------------------------------

PARAM_CASES: list[tuple[str | None, list[str], Expected]] = [
    (None, ["application/zip"], ZipRequest(None)),
    (None, ["Application/ZIP"], ZipRequest(None)),
    (None, ["application/zip;transfer-syntax=*"], ZipRequest("*")),
    (None, [f"application/zip; transfer-syntax={JPEG}"], ZipRequest(JPEG)),
    (None, ["application/dicom"], None),
    (None, [MULTIPART], None),
    (None, ["application/zip,application/dicom;q=0.5"], ZipRequest(None)),
    (None, ["application/dicom;q=0.5", "application/zip"], ZipRequest(None)),
    (None, [f"application/zip;q=0.4, {MULTIPART};q=0.5"], None),
    (None, ["application/zip;q=0", "application/dicom"], None),
    (None, ["application/zip, application/json;q=0.9"], ZipRequest(None)),
    (None, ['application/zip;password="p,w;d"'], ZipRequest(None, "p,w;d")),
    # no wildcards in the query parameter
    (None, ["*/*"], BadRequest),
    (None, ["application/*"], BadRequest),
    (None, ["application/zip, */*;q=0.1"], BadRequest),
    (None, ["application/dicom", "image/*"], BadRequest),
    # nothing acceptable
    (None, ["application/zip;q=0"], NotAcceptable),
    (None, ["application/dicom;q=0", "application/zip;q=0"], NotAcceptable),
    # empty values (a stray comma inside a value is fine)
    (None, [""], BadRequest),
    (None, [" , "], BadRequest),
    (None, ["application/zip", ""], BadRequest),
    (None, ["application/zip,"], ZipRequest(None)),
    # malformed parameter values
    (None, ["application/zip;q=abc"], BadRequest),
    (None, ["application/dicom json"], BadRequest),  # unencoded '+' decoded as space
    (None, ['application/zip;password="x'], BadRequest),
    (None, ["application/zip;transfer-syntax=bogus"], BadRequest),
    (None, ["application/zip;level=study"], BadRequest),
    # mixing in the list that selected zip
    (None, ["application/zip", "text/html;q=0.5"], BadRequest),
    (None, ["application/zip,application/pdf;q=0.1"], BadRequest),
    (None, ["application/zip", "image/jpeg;q=0"], ZipRequest(None)),
    # PS3.18 8.3.3.1: a query parameter asking for zip and a rendered type is 400, whoever wins
    (None, ["image/jpeg", "application/zip;q=0.5"], BadRequest),
    # compatibility with the Accept header
    ("", ["application/zip"], ZipRequest(None)),
    ("  ", ["application/zip"], ZipRequest(None)),
    ("*/*", ["application/zip"], ZipRequest(None)),
    ("application/*", ["application/zip"], ZipRequest(None)),
    ("application/zip", ["application/zip"], ZipRequest(None)),
    (CHROME, ["application/zip"], ZipRequest(None)),
    (FIREFOX, ["application/zip;transfer-syntax=*"], ZipRequest("*")),
    ("text/html, image/jpeg, */*;q=0.1", ["application/zip"], ZipRequest(None)),
    ("application/dicom", ["application/zip"], NotAcceptable),
    ("image/jpeg", ["application/zip"], NotAcceptable),
    ("*/*;q=0", ["application/zip"], NotAcceptable),
    ("application/zip;q=0, */*", ["application/zip"], NotAcceptable),
    ("application/*;q=0, */*", ["application/zip"], NotAcceptable),
    ("application/*;q=0.1, */*;q=0", ["application/zip"], ZipRequest(None)),
    # the parameter decides, not the header
    (
        "application/zip;transfer-syntax=1.2.3",
        ["application/zip;transfer-syntax=*"],
        ZipRequest("*"),
    ),
    ("application/zip", ["application/dicom"], None),
    ("application/zip;transfer-syntax=bogus", ["application/zip"], ZipRequest(None)),
    # ... but both are always validated
    ("application/", ["application/dicom"], BadRequest),
    ("application/zip\x00", ["application/zip"], BadRequest),
]


@pytest.mark.parametrize(("header", "params", "expected"), PARAM_CASES)
def test_param(header: str | None, params: list[str], expected: Expected) -> None:
    check(expected, header, params)


# --- lengths and error reasons ------------------------------------------------------------------


def test_10kb_header_is_too_long() -> None:
    header = ", ".join(["application/dicom"] * 600)
    assert len(header) > 10_000
    with pytest.raises(BadRequest, match="Accept too long"):
        negotiate(header, [])


def test_params_too_long_in_total() -> None:
    with pytest.raises(BadRequest, match="Accept too long"):
        negotiate(None, ["application/dicom"] * 300)
    with pytest.raises(BadRequest, match="Accept too long"):
        negotiate(None, [""] * 5000)


def test_max_length_is_inclusive_and_configurable() -> None:
    header = "application/zip" + " " * (4096 - len("application/zip"))
    assert negotiate(header, []) == ZipRequest(None)
    with pytest.raises(BadRequest, match="Accept too long"):
        negotiate(header + " ", [])
    with pytest.raises(BadRequest, match="Accept too long"):
        negotiate(None, ["application/zip"], max_length=10)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("application/zip;transfer-syntax=" + "9" * 3000, "transfer-syntax"),
        ('application/zip;transfer-syntax="' + "\u202e\x80" * 1000 + '"', "transfer-syntax"),
        ("application/zip;" + "x" * 3000 + "=1", "unsupported"),
        ("application/zip, image/" + "j" * 3000 + ";q=0.5", "mixes"),
        ("application/zip;q=" + "0" * 3000, "q value"),
        ('application/zip;password="' + "a" * 3000, "unbalanced"),
        ("application/zip\x1b[31m" + "a" * 3000, "control character"),
    ],
)
def test_reasons_are_short_and_escaped(header: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        negotiate(header, [])
    reason = info.value.reason
    assert fragment in reason
    assert len(reason) < 250
    assert reason.isascii()
    assert all(" " <= c < "\x7f" for c in reason)


# --- ZipRequest and UIDs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "accept"),
    [
        (ZipRequest(None), MULTIPART),
        (ZipRequest("*"), f"{MULTIPART}; transfer-syntax=*"),
        (ZipRequest(JPEG, "pw"), f"{MULTIPART}; transfer-syntax={JPEG}"),
    ],
)
def test_upstream_accept(request_: ZipRequest, accept: str) -> None:
    assert request_.upstream_accept() == accept


def test_password_not_in_repr() -> None:
    assert "hunter2" not in repr(ZipRequest("*", "hunter2"))
    assert ZIP == "application/zip"


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        (EXPLICIT_LE, True),
        ("1.2.840.10008.1.2", True),
        ("0", True),
        ("0.0.0", True),
        ("2.25.329800735698586629295641978511506172918", True),
        ("1." + "2" * 62, True),
        ("1." + "2" * 63, False),  # 65 characters
        ("", False),
        ("01.2", False),
        ("1.02", False),
        ("1.00", False),
        ("1..2", False),
        (".1", False),
        ("1.", False),
        ("1.2a", False),
        ("abc", False),
        ("1.2 ", False),
        (" 1.2", False),
        ("1.2\n", False),
        ("+1", False),
        ("-1", False),
        ("\u0661.\u0662", False),  # Arabic-Indic digits are not 0-9
        ("*", False),
    ],
)
def test_is_valid_uid(uid: str, valid: bool) -> None:
    assert is_valid_uid(uid) is valid


# --- property-based tests -----------------------------------------------------------------------

FRAGMENTS = [
    "application/zip",
    "application/dicom",
    "multipart/related",
    "*/*",
    "application/*",
    "image/*",
    "text/html",
    "/",
    ",",
    ";",
    " ",
    "\t",
    "=",
    '"',
    "\\",
    "q",
    "q=",
    "0",
    "1",
    ".",
    "0.5",
    "q=1",
    "transfer-syntax=",
    "password=",
    "*",
    "1.2.840.10008.1.2.1",
    "01",
    "\x00",
    "\u00e9",
    "type=",
]
accept_like = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)
TYPES = [ZIP, "APPLICATION/ZIP", "application/dicom", MULTIPART, "*/*", "application/*"]
TYPES += ["image/jpeg", "text/html", "application/pdf", "application/json"]
PARAMS = ["", "q=0", "q=0.5", "q=1", "q=0.25", "transfer-syntax=*", f"transfer-syntax={JPEG}"]
PARAMS += ["transfer-syntax=1.02", 'password="a,b"', "password=x", "foo=bar"]
entries = st.tuples(st.sampled_from(TYPES), st.lists(st.sampled_from(PARAMS), max_size=3))
structured = st.lists(entries.map(lambda e: ";".join([e[0], *e[1]])), max_size=5).map(",".join)
any_accept = st.one_of(st.text(), accept_like, structured)


def call_any(header: str | None, params: list[str], prefer: bool) -> None:
    try:
        result = negotiate(header, params, prefer_zip_on_tie=prefer)
    except (BadRequest, NotAcceptable) as exc:
        assert 0 < len(exc.reason) < 400
        assert all(" " <= c < "\x7f" for c in exc.reason)
    else:
        assert result is None or isinstance(result, ZipRequest)
        if result is not None:
            ts = result.transfer_syntax
            assert ts is None or ts == "*" or is_valid_uid(ts)
            assert result.upstream_accept().startswith(MULTIPART)


@given(st.one_of(st.none(), any_accept), st.lists(any_accept, max_size=4), st.booleans())
def test_fuzz_never_raises_anything_else(
    header: str | None, params: list[str], prefer: bool
) -> None:
    call_any(header, params, prefer)


@given(st.text(max_size=5000), st.lists(st.text(max_size=2000), max_size=3))
def test_fuzz_long_text(header: str, params: list[str]) -> None:
    call_any(header, params, False)


uids = (
    st.lists(st.integers(0, 10**12), min_size=1, max_size=8)
    .map(lambda parts: ".".join(map(str, parts)))
    .filter(lambda uid: len(uid) <= 64)
)
passwords = st.text(st.characters(min_codepoint=0x20, exclude_characters="\x7f"), max_size=20)
OTHER_TYPES = ["application/dicom", MULTIPART, "application/dicom+json", "application/json"]


def fmt_q(q: int) -> str:
    return "1" if q == 1000 else f"0.{q:03d}".rstrip("0")


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def zip_lists(draw: st.DrawFn) -> tuple[str, list[str], ZipRequest]:
    ts = draw(st.one_of(st.none(), st.just("*"), uids))
    password = draw(st.one_of(st.none(), passwords))
    zip_q = draw(st.integers(1, 1000))
    sep = draw(st.sampled_from([";", "; ", " ;\t"]))
    params: list[str] = []
    if ts is not None:
        params.append("transfer-syntax=" + (quote(ts) if draw(st.booleans()) else ts))
    if password is not None:
        params.append("password=" + quote(password))
    if zip_q != 1000 or draw(st.booleans()):
        params.append("q=" + fmt_q(zip_q))
    params = draw(st.permutations(params))
    zip_entry = sep.join(["application/zip", *params])
    others = draw(
        st.lists(
            st.tuples(st.sampled_from(OTHER_TYPES), st.integers(0, zip_q - 1)).map(
                lambda other: f"{other[0]}{sep}q={fmt_q(other[1])}"
            ),
            max_size=4,
        )
    )
    position = draw(st.integers(0, len(others)))
    entries = [*others[:position], zip_entry, *others[position:]]
    joined = draw(st.sampled_from([",", ", ", " ,\t", ",,"])).join(entries)
    return joined, entries, ZipRequest(ts, password)


@given(zip_lists())
def test_well_formed_lists_round_trip(case: tuple[str, list[str], ZipRequest]) -> None:
    text, entries, expected = case
    assert negotiate(text, []) == expected
    assert negotiate(None, [text]) == expected
    assert negotiate("*/*", entries) == expected
    got = negotiate(text, [], prefer_zip_on_tie=True)
    assert got is not None
    assert got.password == expected.password
    suffix = "" if expected.transfer_syntax is None else f"; transfer-syntax={got.transfer_syntax}"
    assert got.upstream_accept() == MULTIPART + suffix


@given(uids)
def test_generated_uids_are_valid(uid: str) -> None:
    assert is_valid_uid(uid)


@given(st.one_of(st.none(), structured), st.lists(structured, max_size=2))
def test_prefer_zip_on_tie_only_adds_zip(header: str | None, params: list[str]) -> None:
    try:
        plain = negotiate(header, params)
    except (BadRequest, NotAcceptable):
        return
    if plain is not None:
        assert negotiate(header, params, prefer_zip_on_tie=True) == plain


@pytest.mark.parametrize(
    ("raw_query", "values"),
    [
        ("accept=application/zip", ["application/zip"]),
        # An unencoded subtype suffix keeps its "+" (a generic parser makes it a space).
        ("accept=application/zip,application/dicom+json",
         ["application/zip,application/dicom+json"]),
        # A form-encoded space is still a space; %2B is always a "+".
        ("accept=application/zip;+transfer-syntax=*", ["application/zip; transfer-syntax=*"]),
        ("accept=application%2Fzip%3B%20transfer-syntax%3D*",
         ["application/zip; transfer-syntax=*"]),
        ("accept=application/dicom%2Bjson,+application/zip",
         ["application/dicom+json, application/zip"]),
        ("a=1&accept=image/png&accept=application/zip&acceptx=1&accept",
         ["image/png", "application/zip"]),
        ("", []),
    ],
)
def test_accept_query_values(raw_query: str, values: list[str]) -> None:
    assert accept_query_values(raw_query) == values


def test_dicom_json_with_zip_in_a_link_negotiates_as_written() -> None:
    zip_first = accept_query_values("accept=application/dicom+json;q=0.5,application/zip")
    assert negotiate(None, zip_first) is not None
    json_first = accept_query_values("accept=application/zip;q=0.5,application/dicom+json")
    assert negotiate(None, json_first) is None
