"""``python -m claimx_flow.lab.simulator``: the simulator as a plain process, without the CLI."""

from __future__ import annotations

import argparse
import json
import os
import sys

from claimx_flow.lab.simulator.faults import Faults
from claimx_flow.lab.simulator.runner import PASSWORD_ENV, Endpoint, serve_forever
from claimx_flow.lab.simulator.server import (
    DEFAULT_BASE_PATH,
    DEFAULT_MEDIA_BYTES,
    DEFAULT_PASSWORD,
    DEFAULT_URL_TTL_MS,
    DEFAULT_USERNAME,
    SimulatorConfig,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m claimx_flow.lab.simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--base-path", default=DEFAULT_BASE_PATH)
    parser.add_argument("--media-bytes", type=int, default=DEFAULT_MEDIA_BYTES)
    parser.add_argument("--url-ttl-ms", type=int, default=DEFAULT_URL_TTL_MS)
    parser.add_argument("--faults", default="{}", help="fault knobs as a JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = SimulatorConfig(
        seed=args.seed,
        username=args.username,
        password=os.environ.get(PASSWORD_ENV, DEFAULT_PASSWORD),
        base_path=args.base_path,
        media_bytes=args.media_bytes,
        url_ttl_ms=args.url_ttl_ms,
        secret=os.environ.get("CLAIMX_SIMULATOR_SECRET"),
        faults=Faults.model_validate(json.loads(args.faults)),
    )

    def ready(endpoint: Endpoint) -> None:
        print(f"claimx simulator ready at {endpoint.api_url}", flush=True)

    serve_forever(config, args.host, args.port, on_ready=ready)


if __name__ == "__main__":
    main()
