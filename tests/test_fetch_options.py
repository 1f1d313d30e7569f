"""Credentials go on every request and are listed as secrets; the redactor removes them."""

from __future__ import annotations

import base64

import pytest

from zipproxy.fetch.errors import UsageError
from zipproxy.fetch.options import parse
from zipproxy.fetch.report import Redactor

URL = "http://proxy/dicom-web/studies"


def test_user_becomes_basic_auth_and_secrets() -> None:
    opts = parse([URL, "--out", "d", "--user", "alice:s3cr3t-pw"])
    token = base64.b64encode(b"alice:s3cr3t-pw").decode()
    assert opts.headers["Authorization"] == f"Basic {token}"
    redact = Redactor(opts.secrets)
    assert redact(f"x s3cr3t-pw {token} alice:s3cr3t-pw y") == "x *** *** *** y"


def test_credentials_in_the_url() -> None:
    opts = parse(["http://bob:hunter22@proxy/dicom-web/studies?access_token=tk-991", "-o", "d"])
    assert opts.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:hunter22").decode()
    assert Redactor(opts.secrets)("hunter22 tk-991") == "*** ***"
    assert "hunter22" not in opts.target.shown()


def test_headers() -> None:
    opts = parse([URL, "-o", "d", "-H", "Authorization: Bearer abc.def.ghi", "-H", "X-Trace: 1"])
    assert opts.headers.getall("X-Trace") == ["1"]
    assert Redactor(opts.secrets)("Bearer abc.def.ghi / abc.def.ghi") == "*** / ***"
    assert Redactor(opts.secrets)("X-Trace 1") == "X-Trace 1"  # not a credential


def test_short_strings_are_not_redacted_everywhere() -> None:
    assert Redactor(["ab", "abcd"])("ab abcd") == "ab ***"


@pytest.mark.parametrize(
    "extra",
    [["-H", "NoColon"], ["-H", "Bad Name: x"], ["-H", "X: a\r\nInjected: b"],
     ["--user", "a:b", "-H", "Authorization: Basic x"], ["--layout", "{SOPInstanceUID}"],
     ["--transfer-syntax", "1.2.840.10008.1.2.4.x"]],
)
def test_usage_errors(extra: list[str]) -> None:
    with pytest.raises(UsageError):
        parse([URL, "-o", "d", *extra])


def test_user_in_url_and_flag_conflict() -> None:
    with pytest.raises(UsageError, match="once"):
        parse(["http://a:b@proxy/studies", "-o", "d", "--user", "c:d"])
