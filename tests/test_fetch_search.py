"""SEARCH_URL and paging: every match once, whatever the server does with limit and offset."""

from __future__ import annotations

import pytest
from yarl import URL

from zipproxy.fetch.errors import SearchFailed, UsageError
from zipproxy.fetch.search import Target, count_instances, list_matches, parse_target

STUDY, SERIES_COUNT = "0020000D", "00201208"


def study(n: int, count: int | None = 3) -> dict[str, object]:
    item: dict[str, object] = {STUDY: {"vr": "UI", "Value": [f"1.2.3.{n}"]}}
    if count is not None:
        item[SERIES_COUNT] = {"vr": "IS", "Value": [count]}
    return item


class Server:
    """A QIDO-RS search over ``total`` studies that caps pages at ``cap`` and may ignore
    ``offset``; it records the URLs it was asked."""

    def __init__(self, total: int, cap: int = 10_000, honours_offset: bool = True,
                 count: int | None = 3) -> None:
        self.items = [study(n, count) for n in range(total)]
        self.cap, self.honours_offset = cap, honours_offset
        self.asked: list[URL] = []

    async def __call__(self, url: URL) -> list[object]:
        self.asked.append(url)
        limit = min(int(url.query["limit"]), self.cap)
        offset = int(url.query["offset"]) if self.honours_offset else 0
        return list(self.items[offset : offset + limit])


TARGET = parse_target("http://proxy/dicom-web/studies?ModalitiesInStudy=CT")


def uids(matches: list[object]) -> list[str]:
    return [m.uid for m in matches]  # type: ignore[attr-defined]


async def test_pages_until_a_page_brings_nothing_new() -> None:
    server = Server(5)
    matches = await list_matches(server, TARGET, page=2)
    assert uids(matches) == [f"1.2.3.{n}" for n in range(5)]
    assert [(u.query["limit"], u.query["offset"]) for u in server.asked] == [
        ("2", "0"), ("2", "2"), ("2", "4"), ("2", "5")]
    first = server.asked[0]
    assert first.path == "/dicom-web/studies"
    assert first.query.getall("includefield") == [SERIES_COUNT]
    assert first.query["ModalitiesInStudy"] == "CT"
    assert all(m.instances == 3 and m.path == f"/dicom-web/studies/{m.uid}" for m in matches)


async def test_a_server_that_caps_pages_silently() -> None:
    server = Server(25, cap=10)
    assert len(await list_matches(server, TARGET, page=1000)) == 25
    assert [u.query["offset"] for u in server.asked] == ["0", "10", "20", "25"]


async def test_a_server_that_ignores_offset() -> None:
    server = Server(25, cap=10, honours_offset=False)
    assert len(await list_matches(server, TARGET, page=1000)) == 10  # all it ever shows
    assert len(server.asked) == 2


async def test_limit_and_offset_in_the_search_url_are_a_slice() -> None:
    server = Server(25, cap=4)
    target = parse_target("http://proxy/dicom-web/studies?offset=3&limit=9")
    assert uids(await list_matches(server, target, page=1000)) == [
        f"1.2.3.{n}" for n in range(3, 12)]
    assert all(int(u.query["limit"]) <= 9 for u in server.asked)


async def test_counts_missing_from_the_search_are_asked_per_match() -> None:
    server = Server(2, count=None)
    matches = await list_matches(server, TARGET)
    assert [m.instances for m in matches] == [None, None]
    asked: list[URL] = []

    async def instances(url: URL) -> list[object]:
        asked.append(url)
        items = [{"00080018": {"vr": "UI", "Value": [f"9.{n}"]}} for n in range(7)]
        offset, limit = int(url.query["offset"]), int(url.query["limit"])
        return list(items[offset : offset + limit])

    assert await count_instances(instances, TARGET, matches[0], page=3) == 7
    assert asked[0].path == f"/dicom-web/studies/{matches[0].uid}/instances"
    assert "ModalitiesInStudy" not in asked[0].query  # the study's instances, all of them


async def test_bad_search_answers() -> None:
    async def no_uid(url: URL) -> list[object]:
        return [{"00100020": {"vr": "LO", "Value": ["P"]}}]

    async def bad_uid(url: URL) -> list[object]:
        return [{STUDY: {"vr": "UI", "Value": ["1.2.x; rm -rf /"]}}]

    for qido in (no_uid, bad_uid):
        with pytest.raises(SearchFailed):
            await list_matches(qido, TARGET)


def test_parse_target() -> None:
    t = parse_target("https://alice:pw@pacs.example/zip/dicom-web/studies/1.2.3/series"
                     "?Modality=CT&accept=application/zip&manifest=false&limit=5")
    assert t == Target(URL("https://pacs.example/"), "/zip/dicom-web", "1.2.3",
                       ("Modality=CT",), 0, 5)
    assert t.kind == "series" and t.count_key == "00201209"
    assert "alice" not in t.shown() and "pw" not in t.shown()
    bare = parse_target("http://proxy/studies")
    assert (bare.prefix, bare.study, bare.filters) == ("", None, ())


@pytest.mark.parametrize(
    "url",
    ["ftp://proxy/studies", "http:///studies", "http://proxy/dicom-web/instances",
     "http://proxy/dicom-web/studies/1.2.3", "http://proxy/dicom-web/studies/not-a-uid/series",
     "http://proxy/dicom-web/studies?limit=ten"],
)
def test_bad_search_urls(url: str) -> None:
    with pytest.raises(UsageError):
        parse_target(url)
