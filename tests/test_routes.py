"""routes.zip_route: the one place a request is negotiated and routed to a kind of ZIP."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from zipproxy.config import Settings
from zipproxy.errors import BadRequest, NotAcceptable
from zipproxy.routes import Resource, Search, ZipRoute, match_search, zip_route

SETTINGS = Settings(upstream=URL("http://upstream.invalid"))
ZIP = "?accept=application/zip"
TIE = 'multipart/related; type="application/dicom", application/zip'  # both q=1


def _route(path: str, accept: str | None = None, method: str = "GET",
           settings: Settings = SETTINGS) -> ZipRoute | None:
    request = make_mocked_request(method, path, headers={"Accept": accept} if accept else {})
    return zip_route(request, settings)


def test_each_kind_of_zip_is_routed_once() -> None:
    study = _route("/dw/studies/1.2" + ZIP)
    assert study is not None and study.resource == Resource("/dw", "1.2")
    assert study.search is None and study.rendered is None
    instance = _route("/dw/studies/1.2/series/3/instances/4", "application/zip")
    assert instance is not None and instance.resource == Resource("/dw", "1.2", "3", "4")
    search = _route("/dw/studies?PatientID=X&accept=application/zip")
    assert search is not None and search.search == Search("/dw", None)
    series_search = _route("/dw/studies/1.2/series" + ZIP)
    assert series_search is not None and series_search.search == Search("/dw", "1.2")
    rendered = _route("/dw/studies/1.2/series/3/rendered" + ZIP)
    assert rendered is not None and rendered.rendered == Resource("/dw", "1.2", "3")
    assert rendered.resource is None and rendered.search is None
    assert _route("/dw/studies/1.2" + ZIP + "%3Btransfer-syntax%3D*") is not None


@pytest.mark.parametrize(("path", "accept", "method"), [
    ("/dw/studies/1.2", "application/dicom", "GET"),  # no zip mentioned: transparent
    ("/dw/studies/1.2", None, "GET"),
    ("/dw/studies/1.2" + ZIP, None, "POST"),  # STOW and the like pass through
    ("/dw/studies/1.2" + ZIP, None, "DELETE"),
    ("/dw/studies/1.2/metadata" + ZIP, None, "GET"),  # not a resource, search or rendering
    ("/dw/studies/1.2/series/3/instances/4/rendered" + ZIP, None, "GET"),  # one image
    ("/dw/series" + ZIP, None, "GET"),
    ("/dw/studies/1.2", TIE, "GET"),  # a tie goes to the upstream's type by default
])
def test_what_passes_through(path: str, accept: str | None, method: str) -> None:
    assert _route(path, accept, method) is None


def test_a_tie_can_be_given_to_zip() -> None:
    prefer = Settings(upstream=URL("http://upstream.invalid"), prefer_zip_on_tie=True)
    route = _route("/dw/studies/1.2", TIE, settings=prefer)
    assert route is not None and route.resource is not None


def test_refusals_name_their_reason() -> None:
    with pytest.raises(BadRequest, match="not a valid UID"):
        _route("/dw/studies/1.02" + ZIP)  # PS3.5 9.1: no leading zero in a component
    with pytest.raises(BadRequest, match="not a valid UID"):
        _route("/dw/studies/1.02/rendered" + ZIP)
    with pytest.raises(BadRequest, match="not a valid UID"):
        match_search("/dw/studies/x/series")
    with pytest.raises((BadRequest, NotAcceptable)):
        _route("/dw/studies/1.2", "application/zip; transfer-syntax=1.2.3.x")
