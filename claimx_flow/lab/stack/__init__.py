"""Real servers on 127.0.0.1 for development and tests, started without Docker."""

from claimx_flow.lab.stack.kafka import KafkaService
from claimx_flow.lab.stack.manager import Stack, default_services
from claimx_flow.lab.stack.services import RunningService, Service

__all__ = ["KafkaService", "RunningService", "Service", "Stack", "default_services"]
