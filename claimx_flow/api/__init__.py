"""The ClaimX REST API client: bounded, retrying, circuit-broken, and honest about failures."""

from claimx_flow.api.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from claimx_flow.api.check import CheckResult
from claimx_flow.api.client import ClaimXApiClient
from claimx_flow.api.errors import ClaimXApiError, category_for_status
from claimx_flow.api.policy import ApiPolicy
from claimx_flow.api.ratelimit import TokenBucket

__all__ = [
    "ApiPolicy",
    "BreakerPolicy",
    "BreakerState",
    "CheckResult",
    "CircuitBreaker",
    "ClaimXApiClient",
    "ClaimXApiError",
    "TokenBucket",
    "category_for_status",
]
