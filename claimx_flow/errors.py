"""The project's small exception hierarchy: infrastructure failures and misuse only.

Bad input is not an exception here; it travels as data (a failure envelope) to a DLQ.
"""

from __future__ import annotations

from enum import StrEnum


class ClaimxError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ClaimxError):
    """Configuration is missing or invalid; the message names the variable."""


class StackError(ClaimxError):
    """A local service could not be started, reached or stopped."""


class KafkaAdminError(ClaimxError):
    """A topic could not be created, altered or described."""


class KafkaAdminTimeout(KafkaAdminError):
    """The cluster did not answer an admin request in time (no controller, a broker busy or
    going down): an outage, not a refusal."""


class ErrorCategory(StrEnum):
    """How a failure is routed (CLAIMX_DOMAIN.md §5).

    transient: worth retrying later (retry tier); permanent: retrying cannot help (DLQ at once);
    auth: credentials or permissions are wrong (do not burn retries; readiness goes red).
    """

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    AUTH = "auth"
