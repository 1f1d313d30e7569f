"""Signed download links: bound to one path, expire, cannot be forged."""

from __future__ import annotations

import pytest

from zipproxy.errors import Forbidden
from zipproxy.links import LinkSigner

PATH = "/dicom-web/studies/1.2.3"


def test_a_signed_link_verifies_for_its_path_until_it_expires() -> None:
    signer = LinkSigner("s3cret", ttl=60)
    token, expires = signer.sign(PATH, now=1000)
    assert expires == 1060
    signer.verify(PATH, token, now=1059)
    with pytest.raises(Forbidden, match="expired"):
        signer.verify(PATH, token, now=1061)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: str(int(t.split(".")[0]) + 3600) + "." + t.split(".")[1],  # expiry extended
        lambda t: "",
        lambda t: "x.y",
        lambda t: "9" * 40 + ".abc",
    ],
)
def test_tampered_tokens_are_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    signer = LinkSigner("s3cret", ttl=60)
    token, _ = signer.sign(PATH, now=1000)
    with pytest.raises(Forbidden):
        signer.verify(PATH, mutate(token), now=1001)


def test_a_link_opens_only_its_own_path_and_secret() -> None:
    token, _ = LinkSigner("s3cret", ttl=60).sign(PATH, now=1000)
    with pytest.raises(Forbidden):
        LinkSigner("s3cret", ttl=60).verify(PATH + "/series/4.5", token, now=1001)
    with pytest.raises(Forbidden):
        LinkSigner("other", ttl=60).verify(PATH, token, now=1001)
