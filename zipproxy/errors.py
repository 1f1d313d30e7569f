"""The one exception tree of zipproxy.

Library errors (aiohttp, pydicom, zipstream-ng) are translated into these at one boundary each
(``raise X from exc``); the app's middleware turns them into HTTP answers.

    ZipProxyError
    ├── RequestError                 -- the client asked for something wrong: 4xx before any work
    │   ├── BadRequest               -- 400 (malformed Accept/accept=, bad UID, mixed media types)
    │   ├── Forbidden                -- 403 (invalid or expired signed download link)
    │   ├── NotAcceptable            -- 406 (nothing acceptable, unsupported transfer syntax)
    │   ├── RequestTimeout           -- 408 (the client stopped sending its request body)
    │   ├── TooLarge                 -- 413 (a collection search matched more than the limit)
    │   └── TooManyStreams           -- 503 with Retry-After (concurrent ZIP stream limit)
    ├── UpstreamError                -- the upstream failed before the first ZIP byte
    │   ├── UpstreamUnreachable      -- 502 (refused, DNS, reset before the status line)
    │   ├── UpstreamTimeout          -- 504 (connect or first-byte timeout, or it took no upload)
    │   ├── UpstreamStatus           -- the upstream's own 4xx/5xx, passed through with its status
    │   └── NoInstances              -- 404: a well-formed multipart body with zero parts
    └── StreamError                  -- the retrieved body is wrong; after the first ZIP byte this
        │                               aborts the client connection (never a complete-looking ZIP)
        ├── MultipartError           -- not multipart, missing boundary, truncated, malformed part
        ├── UpstreamBodyError        -- connection closed, reset or idle timeout mid-body
        ├── InstanceError            -- a part that is not a DICOM Part-10 instance, header too big
        ├── DuplicateInstance        -- two parts with the same SOP Instance UID
        └── ClientStalled            -- the client read nothing for longer than the read timeout
"""

from __future__ import annotations


class ZipProxyError(Exception):
    """Base of every error zipproxy raises on purpose."""

    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestError(ZipProxyError):
    status = 400


class BadRequest(RequestError):
    status = 400


class Forbidden(RequestError):
    status = 403


class NotAcceptable(RequestError):
    status = 406


class RequestTimeout(RequestError):
    status = 408


class TooLarge(RequestError):
    status = 413


class TooManyStreams(RequestError):
    status = 503

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class UpstreamError(ZipProxyError):
    status = 502


class UpstreamUnreachable(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamStatus(UpstreamError):
    """The upstream answered an error status before the body; we pass it through."""

    def __init__(
        self,
        status: int,
        reason: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers or {}
        self.body = body


class NoInstances(UpstreamError):
    status = 404


class StreamError(ZipProxyError):
    status = 502


class MultipartError(StreamError):
    pass


class UpstreamBodyError(StreamError):
    pass


class InstanceError(StreamError):
    pass


class DuplicateInstance(StreamError):
    pass


class ClientStalled(StreamError):
    pass
