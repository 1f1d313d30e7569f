"""Load DICOM Part-10 instances into a DICOMweb server with STOW-RS, or into Orthanc through
its REST API (``POST /instances``, :func:`upload`: the bench's and the tests' fast path).

The body is streamed with requests-toolbelt's ``MultipartEncoder``: files are read while the
request is sent, never held in memory together. The encoder only knows ``multipart/form-data``,
so the request's Content-Type is set by hand to ``multipart/related; type="application/dicom";
boundary=...`` with the encoder's boundary. Each part carries ``Content-Type:
application/dicom`` (and a ``Content-Disposition: form-data; name=...`` header that STOW-RS
servers ignore; Orthanc 1.10 accepts it).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder

__all__ = ["StowError", "UploadError", "stow", "stow_content_type", "upload"]

FileLike = Path | str | bytes


class StowError(RuntimeError):
    """The STOW-RS request failed or some instances were not stored."""


class _LazyFile:
    """A file opened on first read and closed at its end, so that a STOW of thousands of files
    holds one descriptor at a time. ``len`` (bytes left) is what MultipartEncoder asks for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.pos = 0
        self._fp: IO[bytes] | None = None

    @property
    def len(self) -> int:
        return self.size - self.pos

    def read(self, length: int = -1) -> bytes:
        if self.pos >= self.size:
            return b""
        if self._fp is None:
            self._fp = self.path.open("rb")
        data = self._fp.read(length)
        self.pos += len(data)
        if not data or self.pos >= self.size:
            self.pos = self.size if not data else self.pos
            self.close()
        return data

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class UploadError(RuntimeError):
    """Orthanc's REST API refused an instance."""


def upload(url: str, items: Iterable[FileLike] | FileLike, *, auth: tuple[str, str] | None,
           workers: int = 4) -> list[dict[str, Any]]:
    """POST raw Part-10 files (paths or bytes) to Orthanc's ``/instances`` at ``url``,
    ``workers`` in parallel, one session per thread.

    Returns Orthanc's JSON answers in input order (``Status`` is ``Success`` or
    ``AlreadyStored``); raises :class:`UploadError` on any other answer.
    """
    todo = [items] if isinstance(items, Path | str | bytes) else list(items)
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()

    def one(item: FileLike) -> dict[str, Any]:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.auth = auth
            with lock:
                sessions.append(session)
        body = item if isinstance(item, bytes) else Path(item).read_bytes()
        response = session.post(url, data=body, headers={"Content-Type": "application/dicom"},
                                timeout=120)
        if response.status_code != 200:
            raise UploadError(
                f"upload of {_describe(item)} -> {response.status_code}: {response.text[:500]}")
        answer: dict[str, Any] = response.json()
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise UploadError(f"upload of {_describe(item)}: {answer!r}")
        return answer

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(one, todo))
    finally:
        for session in sessions:
            session.close()


def _describe(item: FileLike) -> str:
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    return os.fspath(item)


def stow_content_type(boundary: str) -> str:
    """The STOW-RS request Content-Type for ``boundary``."""
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


def stow(
    dicomweb: str,
    files: Iterable[FileLike],
    *,
    auth: tuple[str, str] | None = None,
    study_uid: str | None = None,
    session: requests.Session | None = None,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """POST ``files`` (paths or Part-10 bytes) in one STOW-RS request.

    ``dicomweb`` is the service root (e.g. ``http://127.0.0.1:8042/dicom-web``); with
    ``study_uid`` the request goes to ``/studies/{study_uid}``. Returns the DICOM JSON response
    (keys are tags, e.g. ``00081199`` Referenced SOP Sequence). Raises :class:`StowError` on a
    non-2xx status or when the response lists Failed SOPs (``00081198``).
    """
    url = dicomweb.rstrip("/") + "/studies"
    if study_uid:
        url += f"/{study_uid}"
    with contextlib.ExitStack() as stack:
        fields: list[tuple[str, tuple[str | None, io.BytesIO | _LazyFile, str]]] = []
        for n, item in enumerate(files):
            body: io.BytesIO | _LazyFile
            if isinstance(item, bytes | bytearray):
                body = io.BytesIO(item)
            else:
                body = stack.enter_context(_LazyFile(Path(item)))
            fields.append((f"file{n}", (None, body, "application/dicom")))
        if not fields:
            raise ValueError("stow() needs at least one file")
        encoder = MultipartEncoder(fields=fields)
        headers = {
            "Content-Type": stow_content_type(encoder.boundary_value),
            "Accept": "application/dicom+json",
        }
        sess = session if session is not None else stack.enter_context(requests.Session())
        response = sess.post(url, data=encoder, headers=headers, auth=auth, timeout=timeout)
    if not response.ok:
        raise StowError(f"STOW-RS {url} -> {response.status_code}: {response.text[:2000]}")
    result: dict[str, Any] = response.json() if response.content else {}
    failed = result.get("00081198", {}).get("Value")
    if failed:
        raise StowError(f"STOW-RS {url}: {len(failed)} instance(s) failed: {failed!r:.2000}")
    return result
