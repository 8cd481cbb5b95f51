"""A real Prometheus server (the apt package `make test` installs), scraping what a test says."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from claimx_flow.lab.process import (
    LOOPBACK,
    free_port,
    start_detached,
    stop_process_group,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring/rules/claimx.rules.yaml"


def tool(name: str) -> str:
    """A Prometheus binary; missing is a failure, not a skip: `make test` installs them."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: `make test` installs it (apt-get install prometheus)")
    return path


@dataclass
class Prometheus:
    url: str

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector for ``expr`` (raises on a PromQL error)."""
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, or None when it has no series."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Prometheus]]:
    """``start({job: "host:port"})``: a Prometheus scraping each job's ``/metrics`` every
    second, evaluating the project's rules every second."""
    binary = tool("prometheus")
    started: list[int] = []

    def start(targets: dict[str, str]) -> Prometheus:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        process = start_detached(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={LOOPBACK}:{port}",
            ],
            log_path=log,
            cwd=tmp_path,
        )
        started.append(process.pid)
        url = f"http://{LOOPBACK}:{port}"
        wait_until(
            lambda: _ready(url), timeout_s=30, what="prometheus", pid=process.pid, log_path=log
        )
        return Prometheus(url)

    yield start
    for pid in started:
        stop_process_group(pid, grace_s=10)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False
