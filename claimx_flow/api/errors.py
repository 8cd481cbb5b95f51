"""One exception for every way a ClaimX API call fails, classified as CLAIMX_DOMAIN.md §5 says.

The category decides routing (retry tier, DLQ, or alert), so it is set here, once, from the HTTP
status or the transport failure, and never guessed later from a message.
"""

from __future__ import annotations

from claimx_flow.errors import ClaimxError, ErrorCategory


class ClaimXApiError(ClaimxError):
    """A ClaimX API call failed.

    ``endpoint`` names the call (``project``, ``media``, ``task_assignment``,
    ``video_collaboration``); ``status`` is the HTTP status if there was one; ``retry_after`` is
    the server's ``Retry-After`` in seconds (or how long an open circuit stays open).
    """

    def __init__(
        self,
        category: ErrorCategory,
        endpoint: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"ClaimX API {endpoint}: {message}")
        self.category = category
        self.endpoint = endpoint
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.category is ErrorCategory.TRANSIENT

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields survive pickling (Bytewax snapshots, multiprocessing).
        return (
            _rebuild,
            (self.category, self.endpoint, self.message, self.status, self.retry_after),
        )


def _rebuild(
    category: ErrorCategory,
    endpoint: str,
    message: str,
    status: int | None,
    retry_after: float | None,
) -> ClaimXApiError:
    return ClaimXApiError(category, endpoint, message, status=status, retry_after=retry_after)


def category_for_status(status: int) -> ErrorCategory:
    """401/403 are auth; 408, 429 and 5xx are transient; every other status is permanent."""
    if status in (401, 403):
        return ErrorCategory.AUTH
    if status in (408, 429) or status >= 500:
        return ErrorCategory.TRANSIENT
    return ErrorCategory.PERMANENT
