"""A fault-injecting fake DICOMweb upstream for zipproxy's integration tests.

An aiohttp web app on a free ``127.0.0.1`` port, run by its own event loop in a background
thread of the test process (so its clock is the tests' ``time.monotonic()``). Behaviour is chosen
per *scenario*: the first path segment names a :class:`Plan` registered with :meth:`add`, so a
single proxy in front of the fake can exercise every fault::

    fake.add("dup", Plan(segments=multipart_segments([a, a]), pause=0.3))
    curl {proxy}/dup/studies/{uid}?accept=application/zip   # proxy asks {fake}/dup/studies/{uid}

Every request is recorded (:class:`Seen`: method, raw path and query, headers, body, and how the
exchange ended -- including when the fake noticed that the proxy closed the connection).

Bodies are real multipart bodies: :func:`dicom_part` / :func:`multipart_segments` wrap Part-10
files (from :func:`zipproxy.demo.samples.make_study`) the way Orthanc does, one
``Content-Length`` per part. A plan sends its ``segments`` one by one (optionally ``pause``
seconds apart, so the proxy sees them in separate reads, or ``trickle``-d a few bytes at a time)
and then ends the response in one of these ways (``ending``):

``"eof"``     end the HTTP body properly (last chunk / all of Content-Length)
``"close"``   close the TCP connection gracefully (FIN) without ending the HTTP body
``"reset"``   SO_LINGER 0 and close: the proxy gets a TCP RST
``"stall"``   send nothing more for ``stall`` seconds (or until the proxy gives up), then close

Generated bodies (:class:`GeneratedBody` of :class:`SyntheticInstance` or :class:`TinySeries`
instances) are made while they are sent, for bodies too big to hold (gigabytes, 66,000 parts).

``hang=True`` never sends a status line at all. Every response carries ``Connection: close``,
so the proxy keeps no pooled upstream connections (file descriptor counts stay comparable).

A :class:`Relay` scenario puts the fake *in front of* a real server (Orthanc) as a faulty link:
every request is passed on to it, except where the relay's ``fault`` answers a :class:`Plan`
instead, or relays the real answer :class:`Relayed` slowly, cut short or rewritten. The real
server still makes every answer that is not a fault.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID, ExplicitVRLittleEndian

__all__ = [
    "BOUNDARY",
    "DICOM_MULTIPART",
    "MIB",
    "FakeUpstream",
    "GeneratedBody",
    "Plan",
    "Relay",
    "Relayed",
    "Seen",
    "SyntheticInstance",
    "TinySeries",
    "closing_delimiter",
    "dicom_part",
    "generated_frames_instance",
    "generated_uid",
    "multipart_segments",
    "part10_header",
    "pattern_chunks",
]

BOUNDARY = "fake-upstream-boundary-7c1d0e"
DICOM_MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def dicom_part(
    data: bytes,
    *,
    first: bool,
    boundary: str = BOUNDARY,
    content_type: str | None = "application/dicom",
    with_length: bool = True,
) -> bytes:
    """One part: its boundary line (with the delimiter's leading CRLF unless ``first``),
    its headers and its body."""
    head = ("" if first else "\r\n") + f"--{boundary}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if with_length:
        head += f"Content-Length: {len(data)}\r\n"
    return head.encode("ascii") + b"\r\n" + data


def closing_delimiter(boundary: str = BOUNDARY) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("ascii")


def multipart_segments(
    items: Iterable[bytes | Path],
    *,
    boundary: str = BOUNDARY,
    close: bool = True,
    content_type: str | None = "application/dicom",
) -> list[bytes]:
    """One segment per part, then (``close``) the closing delimiter as its own segment."""
    out = []
    for index, item in enumerate(items):
        data = item.read_bytes() if isinstance(item, Path) else item
        out.append(dicom_part(data, first=index == 0, boundary=boundary, content_type=content_type))
    if close:
        out.append(closing_delimiter(boundary))
    return out


@dataclass
class Plan:
    """What the fake answers for one scenario."""

    status: int = 200
    content_type: str | None = DICOM_MULTIPART
    headers: dict[str, str] = field(default_factory=dict)
    segments: Sequence[bytes] = ()
    #: seconds to sleep after each segment (each is flushed to the socket before the sleep)
    pause: float = 0.0
    #: (bytes, seconds): write each segment in pieces of this size, sleeping between pieces
    trickle: tuple[int, float] | None = None
    #: declared Content-Length; None sends the body chunked
    content_length: int | None = None
    ending: str = "eof"  # "eof" | "close" | "reset" | "stall"
    hang: bool = False  # never send the status line and headers
    stall: float = 10.0  # how long "hang" / "stall" last at most


@dataclass
class Seen:
    """One request the fake received and how the exchange went."""

    scenario: str
    method: str
    path_qs: str
    headers: list[tuple[str, str]]
    body: bytes
    started: float
    finished: float | None = None
    #: "pending", "complete", "closed" (ending close), "reset", "stalled", "hung",
    #: "peer-closed" (the proxy closed the connection while the fake still had more to do)
    outcome: str = "pending"
    peer_closed_at: float | None = None
    bytes_sent: int = 0

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None


@dataclass(frozen=True)
class Relayed:
    """How a relayed answer is spoiled: ``cut_after`` body bytes then the connection closes
    (FIN, no end of body); ``rate`` bytes per second at most; ``rewrite`` changes the whole
    body (it is read first; the Content-Length follows)."""

    cut_after: int | None = None
    rate: float | None = None
    rewrite: Callable[[bytes], bytes] | None = None


@dataclass
class Relay:
    """Pass requests below ``/<scenario>`` on to ``target`` (``http://host:port``), unless
    ``fault(seen)`` returns a :class:`Plan` (answered instead) or a :class:`Relayed`."""

    target: str
    fault: Callable[[Seen], Plan | Relayed | None] = lambda seen: None


# Hop-by-hop headers (RFC 9110 7.6.1) and what aiohttp sets itself; Accept-Encoding is replaced
# so the relayed bodies are the server's plain bytes.
_NOT_RELAYED = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te",
                          "upgrade", "content-length", "accept-encoding", "proxy-connection"})


class _PeerGone(Exception):
    pass


class FakeUpstream:
    """Start with :meth:`start` (returns self), stop with :meth:`stop`; ``url`` is the origin."""

    def __init__(self) -> None:
        self.plans: dict[str, Plan | Callable[[], Plan] | Relay] = {}
        #: scenarios that never read the request body: name -> seconds before answering 500
        self.deaf: dict[str, float] = {}
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # -- test-side API -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, name: str, plan: Plan | Callable[[], Plan] | Relay) -> str:
        """Register a scenario; returns its path prefix (``/name``)."""
        assert "/" not in name and name not in self.plans, name
        self.plans[name] = plan
        return f"/{name}"

    def add_deaf(self, name: str, seconds: float = 30.0) -> str:
        """A scenario that takes the request headers and never reads the body (an upstream
        stalled during an upload); returns its path prefix."""
        assert "/" not in name and name not in self.plans and name not in self.deaf, name
        self.deaf[name] = seconds
        return f"/{name}"

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def seen(self, scenario: str) -> list[Seen]:
        return [s for s in self.requests if s.scenario == scenario]

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def start(self) -> FakeUpstream:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        assert self.port, "fake upstream did not start"
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._stopping is not None and self._runner is not None
            self._stopping.set()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=20)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        self._loop = None

    # -- server side ---------------------------------------------------------------------

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        scenario = request.rel_url.raw_path.lstrip("/").split("/", 1)[0]
        if scenario in self.deaf:  # a stalled upstream: never reads the request body
            with self._lock:
                self._seen.append(Seen(scenario, request.method, request.rel_url.raw_path_qs,
                                       list(request.headers.items()), b"", time.monotonic()))
            await asyncio.sleep(self.deaf[scenario])
            return web.Response(status=500, text="fake upstream: deaf scenario timed out\n")
        body = await request.read()
        seen = Seen(
            scenario,
            request.method,
            request.rel_url.raw_path_qs,
            list(request.headers.items()),
            body,
            time.monotonic(),
        )
        with self._lock:
            self._seen.append(seen)
        plan = self.plans.get(scenario)
        if isinstance(plan, Relay):
            decision = plan.fault(seen)
            if not isinstance(decision, Plan):
                try:
                    return await self._relay(request, scenario, plan, decision or Relayed(), seen)
                except _PeerGone:
                    seen.outcome = "peer-closed"
                    return web.Response(status=499)
                finally:
                    seen.finished = time.monotonic()
            plan = decision
        if callable(plan):
            plan = plan()
        if plan is None:
            seen.outcome, seen.finished = "complete", time.monotonic()
            resp = web.Response(status=404, text=f"fake upstream: no scenario {scenario!r}\n")
            resp.force_close()
            return resp
        try:
            return await self._play(request, plan, seen)
        except _PeerGone:
            seen.outcome = "peer-closed"
            return web.Response(status=499)  # never reaches anyone: the connection is gone
        finally:
            seen.finished = time.monotonic()

    def _peer_gone(self, request: web.Request) -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    async def _idle(self, request: web.Request, seconds: float, seen: Seen) -> None:
        """Send nothing for ``seconds``; raise _PeerGone as soon as the proxy closes."""
        assert self._stopping is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self._peer_gone(request):
                seen.peer_closed_at = time.monotonic()
                raise _PeerGone
            await asyncio.sleep(0.01)

    async def _write(
        self, resp: web.StreamResponse, data: bytes, seen: Seen, request: web.Request
    ) -> None:
        if self._peer_gone(request):
            seen.peer_closed_at = time.monotonic()
            raise _PeerGone
        try:
            await resp.write(data)
        except ConnectionError as exc:
            seen.peer_closed_at = time.monotonic()
            raise _PeerGone from exc
        seen.bytes_sent += len(data)

    async def _relay(self, request: web.Request, scenario: str, relay: Relay, how: Relayed,
                     seen: Seen) -> web.StreamResponse:
        """The target's answer to the same request, spoiled as ``how`` says."""
        url = relay.target + request.rel_url.raw_path_qs[len(scenario) + 1 :]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_RELAYED}
        headers["Accept-Encoding"] = "identity"  # aiohttp would ask for gzip itself
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
            request.method, url, headers=headers, data=seen.body or None
        ) as answer:
            resp = web.StreamResponse(status=answer.status, reason=answer.reason)
            for name in ("Content-Type", "Content-Encoding", "WWW-Authenticate", "Retry-After"):
                if name in answer.headers:
                    resp.headers[name] = answer.headers[name]
            resp.force_close()
            if how.rewrite is not None:
                body = how.rewrite(await answer.read())
                resp.content_length = len(body)
                await resp.prepare(request)
                return await self._send_relayed(request, resp, _once(body), how, seen)
            await resp.prepare(request)
            return await self._send_relayed(request, resp, _chunks(answer), how, seen)

    async def _send_relayed(self, request: web.Request, resp: web.StreamResponse,
                            pieces: _AsyncChunks, how: Relayed, seen: Seen) -> web.StreamResponse:
        async for chunk in pieces:
            if how.cut_after is not None and seen.bytes_sent + len(chunk) >= how.cut_after:
                await self._write(resp, chunk[: how.cut_after - seen.bytes_sent], seen, request)
                if request.transport is not None:
                    request.transport.close()
                seen.outcome = "closed"
                return resp
            await self._write(resp, chunk, seen, request)
            if how.rate:
                await self._idle(request, len(chunk) / how.rate, seen)
        await resp.write_eof()
        seen.outcome = "complete"
        return resp

    async def _play(self, request: web.Request, plan: Plan, seen: Seen) -> web.StreamResponse:
        if plan.hang:
            await self._idle(request, plan.stall, seen)
            seen.outcome = "hung"
            late = web.Response(status=599, text="fake upstream: too late\n")
            late.force_close()
            return late
        resp = web.StreamResponse(status=plan.status)
        for name, value in plan.headers.items():
            resp.headers[name] = value
        if plan.content_type is not None:
            resp.headers["Content-Type"] = plan.content_type
        if plan.content_length is not None:
            resp.content_length = plan.content_length
        resp.force_close()
        await resp.prepare(request)
        for segment in plan.segments:
            if plan.trickle is None:
                await self._write(resp, segment, seen, request)
            else:
                size, interval = plan.trickle
                for start in range(0, len(segment), size):
                    await self._write(resp, segment[start : start + size], seen, request)
                    await asyncio.sleep(interval)
            if plan.pause:
                await self._idle(request, plan.pause, seen)
        transport = request.transport
        if plan.ending == "eof":
            try:
                await resp.write_eof()
            except ConnectionError as exc:
                seen.peer_closed_at = time.monotonic()
                raise _PeerGone from exc
            seen.outcome = "complete"
        elif plan.ending == "close":
            if transport is not None:
                transport.close()
            seen.outcome = "closed"
        elif plan.ending == "reset":
            if transport is not None:
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            seen.outcome = "reset"
        elif plan.ending == "stall":
            await self._idle(request, plan.stall, seen)
            seen.outcome = "stalled"
            if transport is not None:
                transport.close()
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(f"unknown ending {plan.ending!r}")
        return resp


_AsyncChunks = AsyncIterator[bytes]


async def _chunks(answer: aiohttp.ClientResponse, size: int = 4096) -> _AsyncChunks:
    async for chunk in answer.content.iter_chunked(size):
        yield chunk


async def _once(body: bytes) -> _AsyncChunks:
    yield body


# -- generated instances and bodies -------------------------------------------------------------
#
# For the load, backpressure, ZIP64 and lifecycle tests: Part-10 instances described rather than
# stored, and multipart bodies produced segment by segment while the fake sends them, so a body
# of gigabytes (or of 66,000 parts) never exists whole in the test process.

SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
SC_MULTIFRAME_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"  # Multi-frame Grayscale Byte SC
GENERATED_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as zipproxy.demo uses
MIB = 1 << 20
_BLOCK = MIB
_BLOCK_PATTERN = memoryview(bytes(range(256)) * (_BLOCK // 256))


def generated_uid(*parts: object) -> str:
    """A short deterministic UID (<= 42 characters), so that suffixes still fit in 64."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return f"{GENERATED_UID_ROOT}{int.from_bytes(digest[:6], 'big') + 10**15}"


def _element_header(group: int, element: int, vr: bytes, length: int) -> bytes:
    """Explicit VR Little Endian header of an OB/OW/UN element (2 reserved bytes, 32-bit length)."""
    return struct.pack("<HH2sHI", group, element, vr, 0, length)


def part10_header(
    *,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    number: int | str,
    pixel_length: int,
    rows: int,
    columns: int,
    frames: int = 1,
    patient_id: str = "ZP-GEN-001",
    patient_name: str = "Generated^Instance",
    series_number: int = 1,
) -> bytes:
    """A Part-10 file (Explicit VR Little Endian, 8-bit Secondary Capture) up to and including
    the Pixel Data element header; exactly ``pixel_length`` bytes of pixels must follow."""
    assert pixel_length % 2 == 0 and pixel_length < 0xFFFFFFFF, pixel_length
    sop_class = SC_MULTIFRAME_BYTE if frames > 1 else SC_IMAGE
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(GENERATED_UID_ROOT + "77.1")
    meta.ImplementationVersionName = "ZP_FAKEUPSTREAM"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate, ds.StudyTime = "20240105", "120000"
    ds.ContentDate, ds.ContentTime = "20240105", "120000"
    ds.AccessionNumber = ""
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.Manufacturer = "zipproxy tests"
    ds.ReferringPhysicianName = ""
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "GEN"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = number
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
        ds.FrameTime = 40.0
        ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue() + _element_header(0x7FE0, 0x0010, b"OB", pixel_length)


def pattern_chunks(length: int, seed: int) -> Iterator[bytes]:
    """``length`` bytes in blocks of 1 MiB; each full block starts with (seed, block index), so a
    lost, repeated or reordered block changes the CRC and the SHA-256."""
    for index, start in enumerate(range(0, length, _BLOCK)):
        size = min(_BLOCK, length - start)
        block = struct.pack("<QQ", seed, index) + _BLOCK_PATTERN[16:]
        yield block if size == _BLOCK else block[:size]


@dataclass(frozen=True)
class SyntheticInstance:
    """``header`` (ends with the Pixel Data element header), ``pixel_length`` bytes of pattern,
    then, when ``padding_length``, a Data Set Trailing Padding (FFFC,FFFC) OB element of that
    many bytes (how one instance gets past the 4 GiB a single element length can say)."""

    header: bytes
    pixel_length: int
    padding_length: int = 0
    seed: int = 0

    @property
    def size(self) -> int:
        padding = 12 + self.padding_length if self.padding_length else 0
        return len(self.header) + self.pixel_length + padding

    def chunks(self) -> Iterator[bytes]:
        yield self.header
        yield from pattern_chunks(self.pixel_length, self.seed)
        if self.padding_length:
            yield _element_header(0xFFFC, 0xFFFC, b"OB", self.padding_length)
            yield from pattern_chunks(self.padding_length, self.seed + 1)


def generated_frames_instance(
    key: str, number: int, frames: int, *, padding_length: int = 0, rows: int = 1024,
    columns: int = 1024,
) -> SyntheticInstance:
    """A multi-frame 8-bit instance of ``frames`` x ``rows`` x ``columns`` bytes of pixels,
    study and series from ``key``, SOP Instance UID from ``key`` and ``number``."""
    pixel_length = frames * rows * columns
    header = part10_header(
        study_uid=generated_uid(key, "study"),
        series_uid=generated_uid(key, "series"),
        sop_uid=generated_uid(key, "instance", number),
        number=number,
        pixel_length=pixel_length,
        rows=rows,
        columns=columns,
        frames=frames,
    )
    return SyntheticInstance(header, pixel_length, padding_length, seed=number * 2)


class TinySeries:
    """``count`` small single-frame instances of one series (a few hundred bytes each).

    One template is written with pydicom; instance ``i`` is that template with the SOP Instance
    UID (``uid_base`` + ``.`` + ``1000001 + i``) and the Instance Number (``i + 1``, padded to 8
    characters) substituted in place, so making one costs microseconds.
    """

    _NUMBER = "97531864"  # placeholder Instance Number: 8 digits, found once in the template

    def __init__(self, key: str, count: int, *, rows: int = 8, columns: int = 8) -> None:
        assert 0 < count <= 8_999_999
        self.key, self.count = key, count
        self.study_uid = generated_uid(key, "study")
        self.series_uid = generated_uid(key, "series")
        self.uid_base = generated_uid(key, "instances")
        placeholder = self.sop_uid(8_999_998)
        pixels = bytes(i % 256 for i in range(rows * columns))
        assert len(pixels) % 2 == 0, "Pixel Data has an even length"
        template = part10_header(
            study_uid=self.study_uid,
            series_uid=self.series_uid,
            sop_uid=placeholder,
            number=self._NUMBER,
            pixel_length=len(pixels),
            rows=rows,
            columns=columns,
            patient_id=f"ZP-TINY-{count}",
            patient_name="Tiny^Series",
        ) + pixels
        self._uid_placeholder = placeholder.encode("ascii")
        self._number_placeholder = self._NUMBER.encode("ascii")
        assert template.count(self._uid_placeholder) == 2, "meta + data set"
        assert template.count(self._number_placeholder) == 1
        self.template = template

    def sop_uid(self, index: int) -> str:
        return f"{self.uid_base}.{1_000_001 + index}"

    @property
    def sop_uids(self) -> list[str]:
        return [self.sop_uid(i) for i in range(self.count)]

    def instance(self, index: int) -> bytes:
        assert 0 <= index < self.count, index
        return self.template.replace(
            self._uid_placeholder, self.sop_uid(index).encode("ascii")
        ).replace(self._number_placeholder, f"{index + 1:<8}".encode("ascii"))


class GeneratedBody(Sequence[bytes]):
    """A multipart body of ``count`` instances, ``make(i)`` giving instance ``i`` (bytes or a
    :class:`SyntheticInstance`), made while it is sent: a ``Plan.segments`` that holds no data.

    Every part carries its Content-Length. Pieces of at least ``coalesce`` bytes are segments of
    their own (at most 1 MiB each: the pattern blocks); smaller ones are joined up to that size.
    Iterating again makes the same bytes again. ``len()`` and indexing iterate too (O(body)):
    the fake only iterates.
    """

    def __init__(
        self,
        count: int,
        make: Callable[[int], bytes | SyntheticInstance],
        *,
        boundary: str = BOUNDARY,
        close: bool = True,
        coalesce: int = 256 * 1024,
    ) -> None:
        self.parts, self.make, self.boundary = count, make, boundary
        self.close, self.coalesce = close, coalesce

    def _pieces(self) -> Iterator[bytes]:
        for index in range(self.parts):
            item = self.make(index)
            size = len(item) if isinstance(item, bytes) else item.size
            yield (("" if index == 0 else "\r\n") + f"--{self.boundary}\r\n"
                   "Content-Type: application/dicom\r\n"
                   f"Content-Length: {size}\r\n\r\n").encode("ascii")
            if isinstance(item, bytes):
                yield item
            else:
                yield from item.chunks()
        if self.close:
            yield closing_delimiter(self.boundary)

    def __iter__(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        pending_size = 0
        for piece in self._pieces():
            if len(piece) >= self.coalesce:
                if pending:
                    yield b"".join(pending)
                    pending, pending_size = [], 0
                yield piece
                continue
            pending.append(piece)
            pending_size += len(piece)
            if pending_size >= self.coalesce:
                yield b"".join(pending)
                pending, pending_size = [], 0
        if pending:
            yield b"".join(pending)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getitem__(self, index: int) -> bytes:  # type: ignore[override]
        if index < 0:
            index += len(self)
        for position, segment in enumerate(self):
            if position == index:
                return segment
        raise IndexError(index)
