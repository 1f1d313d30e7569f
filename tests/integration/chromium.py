"""A real headless Chromium driven over the DevTools protocol (CDP), with aiohttp only.

:class:`ChromiumProcess` starts ``/usr/bin/chromium --headless`` in its own session (so its
process group is ours alone), with a throw-away profile, and reads the DevTools endpoint that
Chromium chose from ``DevToolsActivePort``. :meth:`ChromiumProcess.stop` ends exactly that
process group and removes the profile.

:class:`CDP` is one browser-level websocket using flat sessions: commands for a page carry its
``sessionId``; events are kept in order so a test can wait for one that arrived after a
:meth:`CDP.mark`. :class:`Page` wraps the few page commands the browser tests need.

Loopback only: every non-loopback request is sent to a dead proxy on 127.0.0.1:9 and every host
but ``localhost``/``127.0.0.1`` fails to resolve, so no Chromium background service (extension
updates, account lookups, network time) can leave the host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "apt-get install chromium"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Headless, no sandbox (CI runs as root), no background services or first-run UI, no /dev/shm
#: (tiny in CI containers), and the loopback-only guards (see the module docstring).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--remote-debugging-port=0",
)


class CDPError(RuntimeError):
    """A CDP command answered with an error."""


class ChromiumProcess:
    """``/usr/bin/chromium --headless`` with a temporary profile; a context manager."""

    def __init__(
        self, workdir: Path, *, binary: Path = CHROMIUM, startup_timeout: float = 30.0
    ) -> None:
        if not binary.exists():
            raise FileNotFoundError(f"{binary} not found: {INSTALL_HINT}")
        self.profile = Path(tempfile.mkdtemp(prefix="zipproxy-chromium-"))
        self.log_path = workdir / "chromium.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(binary), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills this group only
        )
        try:
            self.ws_url = self._wait_for_endpoint(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_for_endpoint(self, timeout: float) -> str:
        """``ws://127.0.0.1:PORT/devtools/browser/ID`` from the profile's DevToolsActivePort."""
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                lines = port_file.read_text().split()
                # Written in one go, but it may be read half-written: want "PORT\n/devtools/…".
                if len(lines) == 2 and lines[0].isdigit() and lines[1].startswith("/devtools/"):
                    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"chromium exited with {self.proc.returncode} before DevTools was up:\n"
                    f"{self.log()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no DevToolsActivePort after {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def pids(self) -> list[int]:
        """Processes still alive from this browser: in its process group, or with its profile
        on their command line (zygote children retitle themselves: one space-joined string)."""
        marker = re.compile(rb"--user-data-dir=" + re.escape(bytes(self.profile)) + rb"(?:[\0 ]|$)")
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "
            state, pgid = fields[0], int(fields[2])
            if state != b"Z" and (pgid == self.proc.pid or marker.search(cmdline)):
                found.append(int(entry.name))
        return found

    def _killpg(self, sig: signal.Signals) -> None:
        # The group id is the browser's pid (start_new_session); Linux does not reuse an id
        # while a process group of that id exists, so this never hits a stranger.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the browser (it shuts its children down), SIGKILL the group if it lingers,
        wait until no process of this profile is left, then delete the profile."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._killpg(signal.SIGKILL)
                self.proc.wait()
        self._killpg(signal.SIGKILL)  # stragglers in our group (none after a clean exit)
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._log.close()
        # Late writers (crashpad, a dying utility process) can race rmtree: retry briefly.
        for _ in range(50):
            shutil.rmtree(self.profile, ignore_errors=True)
            if not self.profile.exists():
                break
            time.sleep(0.1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CDP:
    """One browser-level DevTools websocket (flat sessions)."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._http = http
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._closed: str | None = None
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, ws_url: str) -> CDP:
        http = aiohttp.ClientSession()
        try:
            # No Origin header is sent, so Chromium's --remote-allow-origins check passes.
            ws = await http.ws_connect(ws_url, max_msg_size=0, timeout=aiohttp.ClientWSTimeout())
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    async def _read(self) -> None:
        reason = "websocket closed"
        try:
            async for msg in self._ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    reason = f"websocket {msg.type.name}: {msg.data!r}"
                    break
                data = json.loads(msg.data)
                if "id" in data:
                    fut = self._pending.pop(data["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(data)
                else:
                    async with self._changed:
                        self.events.append(data)
                        self._changed.notify_all()
        except Exception as exc:
            reason = f"websocket reader failed: {exc!r}"
        finally:
            self._closed = reason
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(reason))
            self._pending.clear()
            async with self._changed:
                self._changed.notify_all()

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command; its ``result`` (raises :class:`CDPError` on an error answer)."""
        if self._closed is not None:
            raise ConnectionError(f"{method}: {self._closed}")
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        try:
            await self._ws.send_str(json.dumps(message))
            async with asyncio.timeout(timeout):
                answer = await fut
        finally:
            self._pending.pop(msg_id, None)
        if "error" in answer:
            raise CDPError(f"{method} {params!r}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def mark(self) -> int:
        """Position in :attr:`events`; pass to :meth:`wait_event` to skip older events."""
        return len(self.events)

    async def wait_event(
        self,
        method: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        since: int = 0,
        timeout: float,
    ) -> dict[str, Any]:
        """``params`` of the first ``method`` event at or after ``since`` that ``predicate``
        accepts; TimeoutError (listing the events seen) after ``timeout`` seconds."""
        index = since
        try:
            async with asyncio.timeout(timeout), self._changed:
                while True:
                    for event in self.events[index:]:
                        params: dict[str, Any] = event.get("params", {})
                        if event.get("method") == method and (
                            predicate is None or predicate(params)
                        ):
                            return params
                    index = len(self.events)
                    if self._closed is not None:
                        raise ConnectionError(f"waiting for {method}: {self._closed}")
                    await self._changed.wait()
        except TimeoutError:
            seen = [e.get("method") for e in self.events[since:]]
            raise TimeoutError(f"no {method} within {timeout} s; events seen: {seen}") from None

    async def close(self) -> None:
        await self._ws.close()
        await self._http.close()
        with contextlib.suppress(Exception):
            await self._reader

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Page:
    """A tab attached through a flat session of a :class:`CDP` connection."""

    def __init__(self, cdp: CDP, target_id: str, session_id: str) -> None:
        self.cdp = cdp
        self.target_id = target_id
        self.session_id = session_id

    @classmethod
    async def open(cls, cdp: CDP, browser_context_id: str | None = None) -> Page:
        params: dict[str, Any] = {"url": "about:blank"}
        if browser_context_id is not None:
            params["browserContextId"] = browser_context_id
        target_id = (await cdp.send("Target.createTarget", params))["targetId"]
        attached = await cdp.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        page = cls(cdp, target_id, attached["sessionId"])
        await page.send("Page.enable")
        return page

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        return await self.cdp.send(method, params, session_id=self.session_id, timeout=timeout)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (awaited if it is a promise)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def poll(self, expression: str, *, timeout: float, interval: float = 0.05) -> Any:
        """Evaluate ``expression`` until it is truthy; its value. TimeoutError otherwise."""
        last: Any = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    last = await self.evaluate(expression)
                    if last:
                        return last
                    await asyncio.sleep(interval)
        except TimeoutError:
            raise TimeoutError(f"{expression!r} still {last!r} after {timeout} s") from None

    async def navigate(self, url: str, *, timeout: float = 30.0) -> None:
        """Go to ``url`` and wait until ``document.readyState`` is "complete" there."""
        nav = await self.send("Page.navigate", {"url": url}, timeout=timeout)
        if nav.get("errorText"):
            raise CDPError(f"navigating to {url}: {nav['errorText']}")
        await self.poll(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            timeout=timeout,
        )

    async def click(self, selector: str) -> None:
        """A real (trusted) left click at the centre of ``selector``, via Input events."""
        box = await self.evaluate(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: "center"}});
                const r = el.getBoundingClientRect();
                return {{x: r.left + r.width / 2, y: r.top + r.height / 2,
                         w: r.width, h: r.height}};
            }})()"""
        )
        if not box or box["w"] <= 0 or box["h"] <= 0:
            raise CDPError(f"{selector!r} is missing or has no box: {box!r}")
        where = {"x": box["x"], "y": box["y"]}
        await self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", **where})
        for kind, buttons in (("mousePressed", 1), ("mouseReleased", 0)):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "button": "left", "buttons": buttons, "clickCount": 1, **where},
            )

    async def screenshot(self, path: Path) -> bytes:
        """PNG of the viewport, written to ``path``."""
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        png = base64.b64decode(shot["data"])
        path.write_bytes(png)
        return png

    async def close(self) -> None:
        with contextlib.suppress(CDPError, ConnectionError, TimeoutError):
            await self.cdp.send("Target.closeTarget", {"targetId": self.target_id}, timeout=10)
