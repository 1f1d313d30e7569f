"""Browser: a real headless Chromium clicks a plain link and saves the DICOM ZIP.

A browser link cannot set ``Accept``, so it carries ``?accept=application/zip`` (PS3.18
8.3.3.1); the proxy answers ``Content-Disposition: attachment; filename="study-<uid>.zip"`` and
Chromium must save exactly that file, complete, as a ZIP every reader in ``zipcheck`` accepts.

Chromium (``/usr/bin/chromium``, Debian package ``chromium``) is driven over its DevTools
protocol with aiohttp (see ``chromium.py``); the page with the link comes from a tiny aiohttp
server on another loopback port, so the click is a cross-origin top-level download, as on a real
viewer page. Missing Chromium fails the test: it is part of the test environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from chromium import CDP, CHROMIUM, INSTALL_HINT, PNG_SIGNATURE, ChromiumProcess, Page
from conftest import Proxy
from zipcheck import check_all, expected_instances_match

from zipproxy.demo.orthanc import SampleUpstream

log = logging.getLogger(__name__)

#: Bound on the click-to-saved-file wait (the sample ZIPs are tiny; CI machines are slow).
DOWNLOAD_TIMEOUT = 60.0

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body style="font: 16px sans-serif; margin: 2em">
<h1>{title}</h1>
<p><a id="dl" href="{href}">Download {label}</a></p>
<script>
  window.clicks = [];
  document.getElementById("dl").addEventListener("click", e => window.clicks.push(e.isTrusted));
</script>
</body>
</html>
"""


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[ChromiumProcess]:
    """A fresh headless Chromium per test; afterwards none of its processes and no profile."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: {INSTALL_HINT}", pytrace=False)
    browser = ChromiumProcess(tmp_path)
    try:
        yield browser
    finally:
        browser.stop()
    left = browser.pids()
    assert not left, f"chromium processes still running after stop(): {left}"
    assert not browser.profile.exists(), f"profile {browser.profile} not removed"


@contextlib.asynccontextmanager
async def serve_page(text: str) -> AsyncIterator[str]:
    """Serve ``text`` as ``/`` (UTF-8 HTML) on a free loopback port; yields the page URL."""

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}/"
    finally:
        await runner.cleanup()


@dataclass
class Download:
    path: Path
    suggested_filename: str
    url: str
    received_bytes: int
    screenshot: Path
    seconds: float  # click to "completed"


async def click_to_download(
    chromium: ChromiumProcess, href: str, label: str, workdir: Path
) -> Download:
    """Open a page whose only link is ``href``, take a screenshot, click the link for real and
    wait (bounded) until Chromium reports the download completed and the file is in place."""
    downloads = workdir / "downloads"
    downloads.mkdir()
    shot = workdir / "page.png"
    title = "zipproxy browser test"
    page_html = PAGE.format(
        title=html.escape(title), href=html.escape(href, quote=True), label=html.escape(label)
    )
    async with serve_page(page_html) as page_url, await CDP.connect(chromium.ws_url) as cdp:
        # A browser context of its own, its downloads going to `downloads` with events on.
        context = (await cdp.send("Target.createBrowserContext"))["browserContextId"]
        await cdp.send(
            "Browser.setDownloadBehavior",
            {
                "behavior": "allow",
                "browserContextId": context,
                "downloadPath": str(downloads.resolve()),
                "eventsEnabled": True,
            },
        )
        page = await Page.open(cdp, context)
        await page.navigate(page_url)
        assert await page.evaluate("document.title") == title
        assert await page.evaluate("document.getElementById('dl').href") == href

        png = await page.screenshot(shot)
        assert png.startswith(PNG_SIGNATURE) and len(png) > 1000, (len(png), png[:16])

        mark = cdp.mark()
        started = time.monotonic()
        await page.click("#dl")
        begin = await cdp.wait_event("Browser.downloadWillBegin", since=mark, timeout=30)
        guid = begin["guid"]
        done = await cdp.wait_event(
            "Browser.downloadProgress",
            lambda p: p["guid"] == guid and p["state"] != "inProgress",
            since=mark,
            timeout=DOWNLOAD_TIMEOUT,
        )
        seconds = time.monotonic() - started
        log.info("%s: click to %s in %.2f s", begin["suggestedFilename"], done["state"], seconds)
        assert done["state"] == "completed", (done, chromium.log())
        # The click was a real, trusted one, and the page stayed (a download, no navigation).
        assert await page.evaluate("window.clicks") == [True]
        assert await page.evaluate("location.href") == page_url
        await page.close()
        await cdp.send("Target.disposeBrowserContext", {"browserContextId": context})

    # "completed" comes after the rename from the .crdownload name; poll anyway, bounded.
    target = downloads / begin["suggestedFilename"]
    deadline = time.monotonic() + 10
    while sorted(p.name for p in downloads.iterdir()) != [target.name]:
        assert time.monotonic() < deadline, (
            f"download folder holds {sorted(p.name for p in downloads.iterdir())}, "
            f"want [{target.name!r}]"
        )
        await asyncio.sleep(0.05)
    # totalBytes is 0 for a streamed (chunked) response: compare with what was received.
    assert target.stat().st_size == done["receivedBytes"] > 0, (target.stat().st_size, done)
    return Download(
        path=target,
        suggested_filename=begin["suggestedFilename"],
        url=begin["url"],
        received_bytes=done["receivedBytes"],
        screenshot=shot,
        seconds=seconds,
    )


async def test_study_link_downloads_study_zip(
    chromium: ChromiumProcess,
    proxy: Proxy,
    orthanc: SampleUpstream,
    tmp_path: Path,
) -> None:
    study = orthanc.studies[0]
    href = f"{proxy.url}/dicom-web/studies/{study.study_uid}?accept=application/zip"
    dl = await click_to_download(chromium, href, study.patient_name, tmp_path)

    name = f"study-{study.study_uid}.zip"
    assert dl.url == href
    assert dl.suggested_filename == name
    assert dl.path.name == name
    info = check_all(dl.path)
    assert {r.sop_instance_uid for r in info.records} == set(study.sop_uids)
    # No transfer-syntax parameter: the upstream default (Explicit VR Little Endian).
    expected_instances_match(dl.path, study, transfer_syntax_star=False)


@pytest.mark.parametrize("patient_id", ["ZP-MR-001", "ZP-JP-001"])
async def test_series_link_non_ascii_patient(
    chromium: ChromiumProcess,
    proxy: Proxy,
    orthanc: SampleUpstream,
    tmp_path: Path,
    patient_id: str,
) -> None:
    """Müller^Jürgen (Latin) and Yamada^Tarou=山田^太郎=やまだ^たろう (beyond Latin-1): the
    name is on the page and in the ZIP's DICOMDIR, never in the file name."""
    study = orthanc.study(patient_id)
    assert not study.patient_name.isascii()
    series = study.series_uids[0]
    href = f"{proxy.url}/dicom-web/studies/{study.study_uid}/series/{series}?accept=application/zip"
    dl = await click_to_download(chromium, href, study.patient_name, tmp_path)

    name = f"series-{series}.zip"
    assert dl.url == href
    assert dl.suggested_filename == name
    assert dl.path.name == name
    info = check_all(dl.path)
    instances = study.series_instances(series)
    assert {r.sop_instance_uid for r in info.records} == {i.sop_uid for i in instances}
    expected_instances_match(dl.path, [i.path for i in instances], transfer_syntax_star=False)
    assert {str(p.PatientName) for p in info.patients} == {study.patient_name}
