"""The ``zipproxy fetch`` branch of zipproxy's one exception tree (:mod:`zipproxy.errors`).

    ZipProxyError
    └── FetchError             -- zipproxy fetch could not do something; ``reason`` is one line
        ├── UsageError         -- bad options or SEARCH_URL: exit 2 before any request
        ├── SearchFailed       -- the QIDO-RS search could not be listed: exit 1
        ├── DownloadFailed     -- one study's ZIP: an HTTP error, a cut body, not a ZIP
        ├── VerifyFailed       -- one study's ZIP arrived but does not verify
        └── LayoutError        -- --extract: the layout cannot place an instance safely

``http_status`` is the server's status where there was one; ``retryable`` says whether another
attempt can help (a 404 or a bad layout will fail the same way again).
"""

from __future__ import annotations

from ..errors import ZipProxyError


class FetchError(ZipProxyError):
    retryable = False

    def __init__(self, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.http_status = http_status


class UsageError(FetchError):
    pass


class SearchFailed(FetchError):
    pass


class DownloadFailed(FetchError):
    def __init__(self, reason: str, http_status: int | None = None, *, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(reason, http_status)
        self.retryable = retryable
        self.retry_after = retry_after


class VerifyFailed(FetchError):
    # A ZIP that arrives whole but does not verify may be a one-off (a changing study, a bad
    # disk write); a second attempt is cheap compared with a silently wrong cohort.
    retryable = True


class LayoutError(FetchError):
    pass
