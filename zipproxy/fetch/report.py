"""What ``zipproxy fetch`` prints: a live bar on a terminal, plain lines otherwise, or nothing.

- :class:`LiveReport` (stdout is a terminal): one rich progress bar over the instances the
  search counted, with studies done/total, bytes, rate and ETA; retries and failures are
  printed above it as they happen.
- :class:`PlainReport` (a pipe, a file, ``nohup``, CI): one line per finished study, so logs
  stay readable, and a line per retry.
- :class:`QuietReport` (``--quiet``): nothing but the failures at the end.

Every line goes through :class:`Redactor`, which replaces the user's passwords and tokens,
wherever they come from (a server may echo a header), and through :func:`client.printable`
where it quotes a server. Text is never read as rich markup.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, TextIO

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.progress import TimeRemainingColumn as Eta
from rich.table import Table
from rich.text import Text

from .errors import FetchError
from .search import Match
from .store import Record
from .verify import CHECKSUMS

MIN_SECRET: Final = 4  # shorter strings would blank out ordinary words


class Redactor:
    """Replaces every secret (and its base64 form in a header) by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


@dataclass
class Tally:
    """Counts for the bar and the closing lines."""

    studies: int = 0  # matches of the search
    instances: int = 0  # instances the search counted
    skipped: int = 0  # verified by an earlier run
    skipped_instances: int = 0
    verified: int = 0
    verified_instances: int = 0
    failed: list[tuple[Match, FetchError, int]] = field(default_factory=list)
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> int:
        return self.skipped + self.verified + len(self.failed)


class Report:
    """The common part: the closing lines and the failure table, on ``out``."""

    def __init__(self, out: TextIO, redact: Redactor, *, terminal: bool) -> None:
        self.redact = redact
        self.tally = Tally()
        self.kind = "study"
        self.console = Console(file=out, force_terminal=terminal, highlight=False,
                               width=None if terminal else 200, soft_wrap=not terminal)

    def line(self, text: str) -> None:
        """One line; under a live bar it is printed above the bar."""
        self.console.print(Text(self.redact(text)))

    def start(self, what: str, kind: str) -> None:
        t = self.tally
        self.kind = kind
        self.line(f"found {t.studies} {_plural(kind, t.studies)}, {t.instances} instances: {what}"
                  + (f"\n{t.skipped} already verified in DIR, skipped" if t.skipped else ""))

    def begin(self, match: Match) -> None:
        pass

    def received(self, match: Match, nbytes: int) -> None:
        self.tally.bytes += nbytes

    def retry(self, match: Match, attempt: int, attempts: int, wait: float,
              error: FetchError) -> None:
        self.line(f"retry     {match.kind} {match.uid}: {error.reason}; attempt {attempt + 1} "
                  f"of {attempts} in {wait:.0f} s")

    def verified(self, match: Match, record: Record, seconds: float) -> None:
        self.tally.verified += 1
        self.tally.verified_instances += record.instances

    def failed(self, match: Match, error: FetchError, attempts: int) -> None:
        self.tally.failed.append((match, error, attempts))
        self.line(f"FAILED    {self._counter()}  {match.kind} {match.uid}: {error.reason}")

    def _counter(self) -> str:
        return f"{self.tally.finished}/{self.tally.studies}"

    def stop(self) -> None:
        pass

    def summary(self, cohort: str | None, interrupted: str | None) -> None:
        t = self.tally
        kind = _plural(self.kind, t.studies)
        elapsed = time.monotonic() - t.started
        text = (f"{t.verified + t.skipped} of {t.studies} {kind} verified "
                f"({t.verified} now, {t.skipped} before), "
                f"{t.verified_instances + t.skipped_instances} instances, "
                f"{decimal(t.bytes)} downloaded in {elapsed:.1f} s")
        if t.failed:
            text += f"; {len(t.failed)} failed"
        self.line(text)
        if cohort:
            self.line(f"cohort index: {cohort}")
        if interrupted:
            self.line(f"interrupted by {interrupted}: rerun the same command to fetch the rest")
        if t.failed:
            self.console.print(self.failure_table())

    def failure_table(self) -> Table:
        failed = len(self.tally.failed)
        table = Table(title=f"Not fetched: {failed} {_plural(self.kind, failed)}",
                      title_justify="left")
        for name in (f"{self.kind} UID", "HTTP", "attempts", "reason"):
            table.add_column(name, overflow="fold")
        for match, error, attempts in self.tally.failed:
            status = str(error.http_status) if error.http_status is not None else "-"
            table.add_row(match.uid, status, str(attempts), Text(self.redact(error.reason)))
        return table


class PlainReport(Report):
    def verified(self, match: Match, record: Record, seconds: float) -> None:
        super().verified(match, record, seconds)
        checked = ", ".join(c for c in CHECKSUMS if c in record.columns)
        self.line(f"verified  {self._counter()}  {match.kind} {match.uid}  {record.instances} "
                  f"instances  {decimal(record.zip_size)}  {seconds:.1f} s  ({checked})")


class QuietReport(Report):
    def line(self, text: str) -> None:
        pass

    def summary(self, cohort: str | None, interrupted: str | None) -> None:
        if self.tally.failed:
            self.console.print(self.failure_table())


class _Bytes(ProgressColumn):
    """Bytes received so far and their rate since the start."""

    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self.tally = tally

    def render(self, task: Task) -> Text:
        elapsed = max(time.monotonic() - self.tally.started, 1e-3)
        rate = self.tally.bytes / elapsed
        return Text(f"{decimal(self.tally.bytes)} {decimal(int(rate))}/s", style="cyan")


class LiveReport(Report):
    def __init__(self, out: TextIO, redact: Redactor) -> None:
        super().__init__(out, redact, terminal=True)
        self.progress = Progress(
            TextColumn("{task.fields[studies]}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} instances"),
            _Bytes(self.tally),
            TextColumn("ETA"), Eta(),
            console=self.console, transient=False, refresh_per_second=8,
        )
        self.task: TaskID | None = None

    def start(self, what: str, kind: str) -> None:
        super().start(what, kind)
        t = self.tally
        self.task = self.progress.add_task("fetch", total=max(t.instances, 1),
                                           completed=t.skipped_instances,
                                           studies=self._studies())
        self.progress.start()

    def _studies(self) -> str:
        return f"{self.tally.finished}/{self.tally.studies} {_plural(self.kind, 2)}"

    def _advance(self, instances: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=instances, studies=self._studies())

    def verified(self, match: Match, record: Record, seconds: float) -> None:
        super().verified(match, record, seconds)
        self._advance(record.instances)

    def failed(self, match: Match, error: FetchError, attempts: int) -> None:
        super().failed(match, error, attempts)
        self._advance(0)

    def stop(self) -> None:
        self.progress.stop()


def _plural(kind: str, count: int) -> str:
    return kind if count == 1 else {"study": "studies", "series": "series"}[kind]


def choose(quiet: bool, redact: Redactor, out: TextIO | None = None) -> Report:
    stream = out or sys.stdout
    if quiet:
        return QuietReport(sys.stderr, redact, terminal=sys.stderr.isatty())
    if stream.isatty():
        return LiveReport(stream, redact)
    return PlainReport(stream, redact, terminal=False)
