"""ClaimX ingestion pipeline: the domain, independent of the stream runtime."""

__version__ = "0.1.0"
