"""Resource matching, the forwarded query, README.TXT and the download filename."""

from __future__ import annotations

import re

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from zipproxy import readme
from zipproxy.errors import BadRequest, NotAcceptable
from zipproxy.forwarding import public_base
from zipproxy.negotiation import ZipRequest, negotiate
from zipproxy.readme import for_resource as readme_text
from zipproxy.routes import Resource, Search, match_resource, match_search, query_without

STUDY, SERIES, INSTANCE = "1.2.840.1", "1.2.840.1.2", "1.2.840.1.2.3"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/studies/{STUDY}", Resource("", STUDY)),
        (f"/dicom-web/studies/{STUDY}/series/{SERIES}", Resource("/dicom-web", STUDY, SERIES)),
        (f"/dcm4chee-arc/aets/DCM4CHEE/rs/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}",
         Resource("/dcm4chee-arc/aets/DCM4CHEE/rs", STUDY, SERIES, INSTANCE)),
        (f"/dicom-web/studies/{STUDY}/metadata", None),
        (f"/dicom-web/studies/{STUDY}/series", None),
        ("/dicom-web/studies", None),
        (f"/dicom-web/studies/{STUDY}/rendered", None),
    ],
)
def test_match_resource(path: str, expected: Resource | None) -> None:
    assert match_resource(path) == expected


@pytest.mark.parametrize("bad", ["..%2F..", "1.2.abc", "1." * 40 + "1", "01.2", "1..2", "%00"])
def test_bad_uids_are_refused(bad: str) -> None:
    with pytest.raises(BadRequest, match="not a valid UID"):
        match_resource(f"/dicom-web/studies/{bad}")


def test_query_without_consumed_parameters() -> None:
    raw = "accept=application%2Fzip&includefield=all&zp-link=1.x&manifest=false&password=p&a%3Db=c"
    assert query_without(raw) == "includefield=all&a%3Db=c"
    assert query_without("") == ""


HOSTILE = ['1.2"\r\nX-Evil: 1', "1.2%0d%0aX-Evil:%201", '1.2%22', "1.2\\3",
           "1.2;3", "\u0661.\u0662", "1.2%20", "1.2\t"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_uids_never_reach_a_readme_or_filename(hostile: str) -> None:
    """Every UID in README.TXT, in the Content-Disposition filename or in an upstream URL went
    through is_valid_uid: CR/LF, quotes, backslashes and their percent-encodings are refused
    at the door, whichever level they stand at."""
    for path in (f"/dw/studies/{hostile}", f"/dw/studies/{STUDY}/series/{hostile}",
                 f"/dw/studies/{STUDY}/series/{SERIES}/instances/{hostile}"):
        with pytest.raises(BadRequest, match="not a valid UID"):
            match_resource(path)
    with pytest.raises(BadRequest, match="not a valid UID"):
        match_search(f"/dw/studies/{hostile}/series")


@pytest.mark.parametrize("syntax", ['"1.2\r\nX: y"', '"1.2\\"', "1.2%0d%0a", '"a\"b"', "1.02"])
def test_hostile_transfer_syntaxes_are_refused(syntax: str) -> None:
    with pytest.raises((BadRequest, NotAcceptable)):
        negotiate(f"application/zip; transfer-syntax={syntax}", [])
    with pytest.raises((BadRequest, NotAcceptable)):
        negotiate(None, [f"application/zip;transfer-syntax={syntax}"])


@pytest.mark.parametrize("host", ['pacs"\r\nX-Evil: 1', "pacs\\x", "pacs example", 'a"b',
                                  "pacs:99999999", "", "pacs/../x"])
def test_a_hostile_host_is_never_echoed(host: str) -> None:
    request = make_mocked_request("GET", "/dw/studies/1.2", app=web.Application(), headers={
        "Host": host, "X-Forwarded-Host": 'evil"\r\n', "Forwarded": 'host="evil"'})
    assert public_base(request) == "(the address this ZIP was downloaded from)"
    plain = make_mocked_request("GET", "/", app=web.Application(),
                                headers={"Host": "pacs.example:8080",
                                                     "X-Forwarded-Host": "evil.example"})
    assert public_base(plain) == "http://pacs.example:8080"  # the client's own claims ignored


def _assert_clean(text: bytes) -> None:
    """ASCII, CR LF line ends only, no quote or backslash, nothing that was not ours."""
    assert text.decode("ascii").replace("\r\n", "").isprintable()
    assert b'"' not in text and b"\\" not in text and b"Evil" not in text


def test_readmes_and_filenames_hold_only_what_was_validated() -> None:
    hostile_host = make_mocked_request("GET", "/", app=web.Application(),
                                       headers={"Host": 'pacs"\r\nX-Evil: 1'})
    origin = public_base(hostile_host)
    for resource in (Resource("/dw", STUDY), Resource("/dw", STUDY, SERIES, INSTANCE)):
        for zipreq in (ZipRequest(None), ZipRequest("*"), ZipRequest("1.2.840.10008.1.2.4.50")):
            for encrypted in (False, True):
                text = readme_text(resource, zipreq, origin, encrypted)
                _assert_clean(text)
                assert f"{resource.level} {'/'.join(resource.uids)}".encode() in text
                assert (b"AES-256" in text) is encrypted
        assert re.fullmatch(r"(study|series|instance)-[0-9.]+\.zip", resource.filename())
    _assert_clean(readme.for_collection(Search("/dw", STUDY), 3, encrypted=True))
    _assert_clean(readme.for_rendered("series", [STUDY, SERIES], "image/png", origin))
    assert b"Source server:   (the address" in readme_text(Resource("", STUDY), ZipRequest("*"),
                                                          origin)
