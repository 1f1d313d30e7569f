"""``zipproxy fetch``: list the matches, fetch the missing ones ``--jobs`` at a time, index them.

Steps (``zipproxy.fetch.main`` does 1, 5 and 6; :meth:`Run.main` does 2 to 4):

1. take DIR (lock, clear what a killed run left in ``.zipproxy/partial/``);
2. list every match of the search, page by page (:mod:`.search`);
3. skip the matches verified by an earlier run (:meth:`Store.load`): no request for them;
4. fetch the others, ``--jobs`` at a time; each attempt downloads to ``partial/``, verifies
   (:mod:`.verify`), then renames into place (:meth:`Store.keep`); a failing attempt is retried
   ``--retries`` times, waiting 1, 2, 4 … (at most 60) seconds or what ``Retry-After`` says;
5. write DIR/cohort.csv from every verified match, also after Ctrl-C or SIGTERM;
6. exit 0 when every match is verified, 1 when one is missing, 130/143 after a signal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from typing import Final

import aiohttp
from yarl import URL

from .client import Client, describe, download_error
from .errors import DownloadFailed, FetchError, SearchFailed
from .options import Options
from .report import Report
from .search import Match, count_instances, list_matches
from .store import Record, Store
from .verify import CHUNK, verify_zip

MAX_WAIT: Final = 60.0
SIGNALS: Final = {signal.SIGINT: ("Ctrl-C", 130), signal.SIGTERM: ("SIGTERM", 143)}


@dataclasses.dataclass
class Run:
    opts: Options
    store: Store
    report: Report
    matches: list[Match] = dataclasses.field(default_factory=list)
    interrupted: str | None = None  # the signal that stopped the run
    _http: Client | None = None

    @property
    def http(self) -> Client:
        assert self._http is not None, "only inside Run.main()"
        return self._http

    @property
    def exit_status(self) -> int:
        if self.interrupted is not None:
            return next(code for name, code in SIGNALS.values() if name == self.interrupted)
        return 1 if self.report.tally.failed or not self.matches else 0

    def records(self) -> list[Record]:
        """The verified matches' records, in the search's order."""
        return [self.store.records[m.name] for m in self.matches if m.name in self.store.records]

    async def main(self) -> None:
        """Steps 2-4; a signal cancels them and is remembered (the caller does steps 5-6)."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def stop(signum: signal.Signals) -> None:
            self.interrupted = SIGNALS[signum][0]
            signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
            task.cancel()

        for signum in SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        try:
            async with Client(self.opts.headers, self.opts.jobs, self.opts.read_timeout) as http:
                self._http = http
                await self._fetch()
        except asyncio.CancelledError:
            if self.interrupted is None:
                raise
        finally:
            self.report.stop()
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)

    async def _fetch(self) -> None:
        opts, tally = self.opts, self.report.tally
        self.matches = await self.listing()  # 2.
        if not self.matches:
            raise SearchFailed(f"the search matched no {opts.target.kind}")
        todo = [m for m in self.matches if self.store.load(m) is None]  # 3.
        tally.studies = len(self.matches)
        tally.instances = sum(m.instances or 0 for m in self.matches)
        tally.skipped = len(self.matches) - len(todo)
        tally.skipped_instances = sum(r.instances for r in self.records())
        self.report.start(opts.target.shown(), opts.target.kind)
        queue = list(reversed(todo))

        async def work() -> None:
            while queue:
                await self.one(queue.pop())

        await asyncio.gather(*(work() for _ in range(min(opts.jobs, len(todo)))))  # 4.

    async def listing(self) -> list[Match]:
        """The matches, each with an instance count (asked per match where the search had
        none)."""
        opts = self.opts
        matches = await list_matches(self.http.qido, opts.target, opts.page_size)
        gate = asyncio.Semaphore(opts.jobs)

        async def counted(match: Match) -> Match:
            if match.instances is not None:
                return match
            async with gate:
                found = await count_instances(self.http.qido, opts.target, match, opts.page_size)
            return dataclasses.replace(match, instances=found)

        return list(await asyncio.gather(*map(counted, matches)))

    async def one(self, match: Match) -> None:
        """A match with its retries; the outcome goes to the report."""
        attempts = self.opts.retries + 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                record = await self.attempt(match)
            except FetchError as exc:
                self.store.part(match).unlink(missing_ok=True)
                if not exc.retryable or attempt == attempts:
                    self.report.failed(match, exc, attempt)
                    return
                wait = self._wait(attempt, exc)
                self.report.retry(match, attempt, attempts, wait, exc)
                await asyncio.sleep(wait)
            except BaseException:
                self.store.part(match).unlink(missing_ok=True)
                raise
            else:
                self.report.verified(match, record, time.monotonic() - started)
                return

    def _wait(self, attempt: int, exc: FetchError) -> float:
        wait = self.opts.retry_wait * 2 ** (attempt - 1)
        hint = exc.retry_after if isinstance(exc, DownloadFailed) else None
        return min(MAX_WAIT, hint if hint is not None else wait)

    async def attempt(self, match: Match) -> Record:
        """One download, verification and rename."""
        await self.download(match)
        assert match.instances is not None
        verified = await asyncio.to_thread(verify_zip, self.store.part(match), match,
                                           match.instances, sha256=self.opts.sha256)
        return await asyncio.to_thread(self.store.keep, match, verified)

    @property
    def zip_headers(self) -> dict[str, str]:
        # identity: the ZIP is written to disk as it arrives, byte for byte
        return {"Accept": f"application/zip; transfer-syntax={self.opts.transfer_syntax}",
                "Accept-Encoding": "identity"}

    def zip_url(self, match: Match) -> URL:
        return self.opts.target.url(match.path, ["manifest=sha256"] if self.opts.sha256 else [])

    async def download(self, match: Match) -> None:
        received = 0
        try:
            async with self.http.session.get(self.zip_url(match),
                                              headers=self.zip_headers) as resp:
                if resp.status != 200:
                    error = download_error(resp.status, resp.reason, resp.headers,
                                           await resp.content.read(4096))
                    if resp.status >= 500:
                        error.reason += self._hint()
                    raise error
                kind = resp.headers.get("Content-Type", "")
                if not kind.lower().startswith("application/zip"):
                    raise DownloadFailed(f"the server answered {kind[:60] or 'no Content-Type'}, "
                                         "not application/zip: is SEARCH_URL a zipproxy?",
                                         resp.status, retryable=False)
                with self.store.part(match).open("wb") as out:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        self.report.received(match, len(chunk))
        except aiohttp.ClientPayloadError as exc:
            raise DownloadFailed(self._cut(received), 200) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownloadFailed(f"{describe(exc)} after {received} bytes") from exc

    def _cut(self, received: int) -> str:
        return (f"the ZIP was cut after {received} bytes: the proxy aborted it because its "
                f"upstream failed mid-stream{self._hint()}")

    def _hint(self) -> str:
        if self.opts.transfer_syntax == "*":
            return ""
        return (f" (can the upstream produce transfer syntax {self.opts.transfer_syntax}? "
                "Orthanc fails or cuts its answer when it cannot)")
