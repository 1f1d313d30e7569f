"""Resource matching, the forwarded query, README.TXT and the download filename."""

from __future__ import annotations

import re

import pytest

from zipproxy.errors import BadRequest
from zipproxy.negotiation import ZipRequest
from zipproxy.readme import for_resource as readme_text
from zipproxy.routes import Resource, match_resource, query_without

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


def test_readme_and_filename_cannot_be_injected() -> None:
    resource = Resource("/dicom-web", STUDY, SERIES)
    text = readme_text(resource, ZipRequest("*"), "http://pacs.example:8042").decode("ascii")
    assert "\r\n\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert f"series {STUDY}/{SERIES}" in text and "as stored" in text
    assert re.fullmatch(r"[a-z]+-[0-9.]+\.zip", resource.filename())
    encrypted = readme_text(resource, ZipRequest(None), "http://pacs", encrypted=True)
    assert b"AES-256" in encrypted and b"7-Zip" in encrypted
