"""Resource matching, the forwarded query, README.TXT and the download filename."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from zipproxy import readme
from zipproxy.config import Settings
from zipproxy.errors import BadRequest
from zipproxy.forwarding import public_base
from zipproxy.keys import PUBLIC_URL
from zipproxy.negotiation import ZipRequest, accept_query_values, negotiate
from zipproxy.readme import for_collection as collection_readme
from zipproxy.readme import for_resource as readme_text
from zipproxy.rendered import RenderedRequest, rendered_request
from zipproxy.retrieve import Plan, single_plan
from zipproxy.routes import Resource, match_resource, match_search, query_without, zip_route


def rendered_zip_request(request: web.Request, settings: Settings) -> RenderedRequest | None:
    """What the app does with a request: route it once, then read the rendered ZIP's options."""
    route = zip_route(request, settings)
    if route is None or route.rendered is None:
        return None
    return rendered_request(request, route, settings)


def rendered_readme_text(req: RenderedRequest, origin: str) -> bytes:
    return readme.for_rendered(req.level, [u for u in (req.study, req.series) if u],
                               req.media_type, origin, req.password is not None)

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


# --- README.TXT and the download filename: nothing a client sends can inject into them ------------
#
# Their variable parts: the UIDs of the path (match_resource, match_search), the transfer syntax
# (negotiate), the proxy's address (public_base, from the Host header), the rendered image type
# (image_type), counts. Each hostile value must be refused with 400 or never reach the output.

# A marker in every hostile value: it must never show up in a README or a filename.
EVIL = "EVIL"
HOSTILE_UIDS = [
    f"1.2\r\nX-{EVIL}: 1",
    f"1.2\nX-{EVIL}",
    f"1.2\r{EVIL}",
    f"1.2%0d%0aX-{EVIL}:%201",
    f"1.2%0D%0A{EVIL}",
    f"1.2%0a{EVIL}",
    f'1.2"{EVIL}',
    f"1.2%22{EVIL}",
    f"1.2\\{EVIL}",
    f"1.2%5c{EVIL}",
    "1.2%22",  # digits and dots around the quote
    "1.2%5C3",
    "1.2%0d%0a",
    "1.2\r\n",
    "1.2%00",
    "1.2%20",
]
HOSTILE_TRANSFER_SYNTAXES = [
    f'"1.2\r\nX-{EVIL}: 1"',  # CR/LF inside a quoted string
    f"1.2\r\n{EVIL}",
    f'"1.2\\"{EVIL}"',  # an escaped quote
    f'"1.2\\\\{EVIL}"',  # an escaped backslash
    f"1.2%0d%0a{EVIL}",  # percent-encoding in the header stays literal
    '"1.2\\"',
    "1.2'",
]
HOSTILE_HOSTS = [
    f'pacs.example"{EVIL}',
    f"pacs.example\r\nX-{EVIL}: 1",
    f"pacs.example\n{EVIL}",
    f"pacs.example%0d%0a{EVIL}",
    f"pacs.example\\{EVIL}",
    f"{EVIL}@pacs.example",
    f"pacs.example/{EVIL}",
    f"pacs.example {EVIL}",
    f"[::1]\"{EVIL}",
    f"pacs.example:80\r\n{EVIL}",
]
FALLBACK_ORIGIN = "(the address this ZIP was downloaded from)"
README_LINE = re.compile(r"[\x20-\x7e]*")  # printable ASCII; no control, no byte >= 0x80
FILENAME = re.compile(r"(?:study|series|instance)-[0-9]+(?:\.[0-9]+)*\.zip")
COLLECTION_FILENAME = re.compile(r"(?:studies|series)-[1-9][0-9]*\.zip")
RENDERED_FILENAME = re.compile(r"rendered-(?:study|series)-[0-9]+(?:\.[0-9]+)*\.zip")


def assert_clean_readme(readme: bytes) -> str:
    """CRLF line ends only, printable ASCII lines, no quote or backslash, no hostile marker."""
    text = readme.decode("ascii")  # raises on any byte >= 0x80
    assert readme.endswith(b"\r\n")
    lines = text.split("\r\n")
    for line in lines:
        assert README_LINE.fullmatch(line), f"control or non-ASCII character in {line!r}"
    assert '"' not in text and "\\" not in text
    assert EVIL not in text and "%" not in text
    return text


def mocked(path: str, headers: dict[str, str] | None = None,
           public_url: str = "") -> web.Request:
    app = web.Application()
    app[PUBLIC_URL] = public_url
    return make_mocked_request("GET", path, headers=headers or {"Host": "pacs.example:8042"},
                               app=app)


def zip_plan(path: str, accept: str = "application/zip",
             headers: dict[str, str] | None = None) -> Plan:
    """What app.handle does for a single resource, up to the Plan."""
    request = mocked(path, {"Host": "pacs.example:8042", "Accept": accept, **(headers or {})})
    zipreq = negotiate(request.headers.get("Accept"), accept_query_values(request.query_string))
    assert zipreq is not None
    resource = match_resource(request.rel_url.raw_path)
    assert resource is not None
    return single_plan(request, resource, zipreq, public_base(request))


@pytest.mark.parametrize("path", [
    f"/dicom-web/studies/{STUDY}",
    f"/dicom-web/studies/{STUDY}/series/{SERIES}",
    f"/studies/{STUDY}/series/{SERIES}/instances/{INSTANCE}",
])
@pytest.mark.parametrize("accept", [
    "application/zip",
    'application/zip; transfer-syntax="*"',
    "application/zip; transfer-syntax=1.2.840.10008.1.2.4.50",
])
def test_readme_and_filename_of_valid_requests(path: str, accept: str) -> None:
    plan = zip_plan(path, accept)
    text = assert_clean_readme(plan.readme)
    assert "Source server:   http://pacs.example:8042\r\n" in text
    resource = match_resource(path)
    assert resource is not None
    assert f"Resource:        {resource.level} {'/'.join(resource.uids)}\r\n" in text
    assert FILENAME.fullmatch(plan.filename)
    assert plan.filename == f"{resource.level}-{resource.uids[-1]}.zip"
    disposition = f'attachment; filename="{plan.filename}"'  # as zipresponse.start_zip writes it
    assert re.fullmatch(r'attachment; filename="[a-z]+-[0-9.]+\.zip"', disposition)
    encrypted = readme_text(resource, ZipRequest(None), "http://pacs", encrypted=True)
    assert b"AES-256" in encrypted and b"7-Zip" in encrypted
    assert_clean_readme(encrypted)


@pytest.mark.parametrize("uid", HOSTILE_UIDS)
@pytest.mark.parametrize("template", [
    "/dicom-web/studies/{u}",
    f"/dicom-web/studies/{STUDY}/series/{{u}}",
    f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{{u}}",
    "/dicom-web/studies/{u}/series/{u}",
])
def test_hostile_uids_are_refused(uid: str, template: str) -> None:
    """CR/LF, quotes, backslashes, raw or percent-encoded, in any UID of the path: 400, before
    any README or filename is made. The same for collections (a series search in a study) and
    rendered ZIPs, which take their UIDs from the same checks."""
    with pytest.raises(BadRequest, match="not a valid UID"):
        match_resource(template.format(u=uid))
    with pytest.raises(BadRequest, match="not a valid UID"):
        match_search(f"/dicom-web/studies/{uid}/series")
    # A raw CR/LF never reaches a handler (aiohttp's parser refuses it, yarl drops it): encoded.
    encoded = uid.replace("\r", "%0d").replace("\n", "%0a")
    request = mocked(template.format(u=encoded) + "/rendered?accept=application/zip")
    with pytest.raises(BadRequest, match="not a valid UID"):
        rendered_zip_request(request, Settings(upstream=URL("http://127.0.0.1:8042")))


@pytest.mark.parametrize("syntax", HOSTILE_TRANSFER_SYNTAXES)
def test_hostile_transfer_syntaxes_are_refused(syntax: str) -> None:
    with pytest.raises(BadRequest):
        negotiate(f"application/zip; transfer-syntax={syntax}", [])
    # The accept query parameter is percent-decoded first: CR/LF arrive as control characters.
    encoded = quote(f"application/zip; transfer-syntax={syntax}", safe="")
    with pytest.raises(BadRequest):
        negotiate(None, accept_query_values(f"accept={encoded}"))


@pytest.mark.parametrize("syntax", HOSTILE_TRANSFER_SYNTAXES)
def test_hostile_transfer_syntaxes_never_reach_a_plan(syntax: str) -> None:
    """Along the whole single-resource path (as app.handle runs it), the request stops at 400
    before a Plan, its README.TXT or its filename exist."""
    with pytest.raises(BadRequest):
        zip_plan(f"/studies/{STUDY}", f"application/zip; transfer-syntax={syntax}")


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_hostile_host_is_never_echoed(host: str) -> None:
    """A hostile Host falls back to a fixed text; X-Forwarded-Host and Forwarded from the client
    are never trusted, whatever they hold."""
    hostile = {"Host": host, "X-Forwarded-Host": f'{EVIL}.example"\r\nX: 1',
               "Forwarded": f'host="{EVIL}.example"', "X-Forwarded-Proto": f"{EVIL}"}
    request = mocked(f"/studies/{STUDY}", hostile)
    assert public_base(request) == FALLBACK_ORIGIN
    plan = zip_plan(f"/studies/{STUDY}", headers=hostile)
    text = assert_clean_readme(plan.readme)
    assert f"Source server:   {FALLBACK_ORIGIN}\r\n" in text
    assert FILENAME.fullmatch(plan.filename)
    # A plain Host is used as it is, still without the client's X-Forwarded-*/Forwarded.
    plain = mocked(f"/studies/{STUDY}", {**hostile, "Host": "pacs.example:8042"})
    assert public_base(plain) == "http://pacs.example:8042"
    # --public-url, when set, wins over any Host, base path included.
    assert public_base(mocked("/", hostile, "https://pacs.example.org/zip")) == (
        "https://pacs.example.org/zip")


@pytest.mark.parametrize("host", [*HOSTILE_HOSTS, "pacs.example:8042"])
@pytest.mark.parametrize("image", ["", "&type=image/jpeg"])
def test_rendered_readme_and_filename_cannot_be_injected(host: str, image: str) -> None:
    settings = Settings(upstream=URL("http://127.0.0.1:8042"))
    request = mocked(f"/dicom-web/studies/{STUDY}/series/{SERIES}/rendered"
                     f"?accept=application/zip{image}", {"Host": host})
    req = rendered_zip_request(request, settings)
    assert req is not None
    text = assert_clean_readme(rendered_readme_text(req, public_base(request)))
    assert f"Resource:        series {STUDY}/{SERIES}\r\n" in text
    assert RENDERED_FILENAME.fullmatch(f"rendered-{req.level}-{req.series or req.study}.zip")


@pytest.mark.parametrize("kind", [f'image/png"{EVIL}', f"image/png\r\n{EVIL}",
                                  f"image/png%0d%0a{EVIL}", f"image/{EVIL}"])
def test_hostile_rendered_type_is_refused(kind: str) -> None:
    settings = Settings(upstream=URL("http://127.0.0.1:8042"))
    request = mocked(f"/dicom-web/studies/{STUDY}/rendered?accept=application/zip"
                     f"&type={quote(kind, safe='/')}")
    with pytest.raises(BadRequest, match="not supported for a rendered ZIP"):
        rendered_zip_request(request, settings)


@pytest.mark.parametrize(("study", "count"), [(None, 1), (None, 100), (STUDY, 3)])
@pytest.mark.parametrize("encrypted", [False, True])
def test_collection_readme_is_clean(study: str | None, count: int, encrypted: bool) -> None:
    path = f"/dicom-web/studies/{study}/series" if study else "/dicom-web/studies"
    search = match_search(path)
    assert search is not None
    text = assert_clean_readme(collection_readme(search, count, encrypted))
    assert (f"{count} series of study {study}" if study else f"{count} studies") in text
    assert COLLECTION_FILENAME.fullmatch(f"{search.level}-{count}.zip")  # as plan_search names it
