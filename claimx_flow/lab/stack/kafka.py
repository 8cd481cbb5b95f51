"""A real single-node Apache Kafka broker (KRaft) from Maven Central jars, without Docker."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from claimx_flow.errors import StackError
from claimx_flow.kafka.clients import LIBRDKAFKA_LOGGER
from claimx_flow.lab.process import (
    LOOPBACK,
    free_port,
    require_free_port,
    start_detached,
    stop_process_group,
    wait_until,
)
from claimx_flow.lab.stack.cache import cache_root, fetch_once
from claimx_flow.lab.stack.services import RunningService

KAFKA_VERSION = "4.1.1"
MAVEN_TIMEOUT_S = 600.0
FORMAT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 90.0
MIN_JAVA = 17

JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
"""A small heap, and only HotSpot's fast compiler, C1 (level 1 of ``CompLevel`` in HotSpot's
``compilerDefinitions.hpp``; C2 is level 4). This broker lives for a bench, a test session or
a local run, on the cores the stages use, and C2 spent that life compiling. Over one
``claimx bench all`` the broker used 36.6 s of CPU by default, 17.0 s of it in its compiler
threads, against 20.8 s (1.3 s compiling) with C1 alone; per message written
(``python -m claimx_flow.lab.bench.broker_cost --linger 50``, rounds of 150,000) C1 alone
cost 4.1-6.1 us from the second round on, where C2 cost 4.7-16.0 us in rounds 2 to 10 and
3.7-3.8 us only from the eleventh, 90 s into the load. A production broker runs for weeks,
and keeps its JVM's defaults."""

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}{sasl_listener}
advertised.listeners=PLAINTEXT://{host}:{port}{sasl_listener}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT{sasl_map}
log.dirs={log_dirs}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.dedupe.buffer.size=1048577
"""

# A second client listener that needs SASL/PLAIN logins (the production protocol minus TLS);
# the broker and its controller keep talking PLAINTEXT to each other.
_SASL_PROPERTIES = """\
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required {users};
"""
SASL_ENDPOINT = "sasl_endpoint"
"""Key of ``RunningService.extra`` holding ``host:port`` of the SASL listener, if any."""


def java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(f"Java {MIN_JAVA}+ not found on PATH: Kafka needs it (install OpenJDK 17)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match is None or int(match.group(1)) < MIN_JAVA:
        raise StackError(f"Java {MIN_JAVA}+ needed for Kafka, found: {out.stderr.splitlines()[:1]}")
    return java


def ensure_kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """The broker's jars, fetched once with Maven into the cache and reused afterwards."""
    lib = cache_root() / f"kafka-{version}" / "lib"
    fetch_once(lib.parent, (lib / ".complete").exists, lambda: _fetch_kafka_jars(version, lib))
    return lib


def _fetch_kafka_jars(version: str, lib: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(f"Kafka jars missing in {lib} and Maven (mvn) not found to fetch them")
    build = lib.parent
    pom = resources.files("claimx_flow.lab.stack").joinpath("kafka-pom.xml").read_text()
    (build / "pom.xml").write_text(pom.replace("@KAFKA_VERSION@", version))
    try:
        result = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={lib}"],
            cwd=build,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise StackError(
            f"fetching Kafka jars with Maven took over {MAVEN_TIMEOUT_S:.0f}s"
        ) from None
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"fetching Kafka jars with Maven failed: {detail[0][:300]}")
    (lib / ".complete").touch()


class KafkaService:
    """Kafka in KRaft mode on loopback: free ports, data in ``workdir``, bounded start-up."""

    name = "kafka"

    def __init__(
        self,
        port: int | None = None,
        version: str = KAFKA_VERSION,
        *,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """``sasl_users`` (user → password) adds a ``SASL_PLAINTEXT``/``PLAIN`` listener beside
        the plaintext one, for proving that clients really authenticate; tests only."""
        self._port = port
        self._version = version
        self._sasl_users = dict(sasl_users or {})

    def start(self, workdir: Path) -> RunningService:
        java = java_executable()
        lib = ensure_kafka_jars(self._version)
        port = require_free_port(self._port, "kafka") if self._port else free_port()
        controller_port = free_port()
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        properties = workdir / "server.properties"
        sasl_port = free_port() if self._sasl_users else None
        text = _SERVER_PROPERTIES.format(
            host=LOOPBACK,
            port=port,
            controller_port=controller_port,
            log_dirs=data,
            sasl_listener=f",SASL_PLAINTEXT://{LOOPBACK}:{sasl_port}" if sasl_port else "",
            sasl_map=",SASL_PLAINTEXT:SASL_PLAINTEXT" if sasl_port else "",
        )
        if sasl_port:
            text += _SASL_PROPERTIES.format(users=_jaas_users(self._sasl_users))
        properties.write_text(text)
        classpath = f"{lib}/*"
        self._format_storage(java, classpath, properties)
        extra = {SASL_ENDPOINT: f"{LOOPBACK}:{sasl_port}"} if sasl_port else {}
        return self._launch(java, classpath, workdir, f"{LOOPBACK}:{port}", extra)

    def restart(self, running: RunningService) -> RunningService:
        """Start a stopped broker again on its old port and data, as a crashed node would."""
        java = java_executable()
        classpath = f"{ensure_kafka_jars(self._version)}/*"
        return self._launch(java, classpath, Path(running.workdir), running.endpoint, running.extra)

    def _launch(
        self,
        java: str,
        classpath: str,
        workdir: Path,
        bootstrap: str,
        extra: dict[str, str] | None = None,
    ) -> RunningService:
        log = workdir / "kafka.log"
        process = start_detached(
            [
                java,
                *JVM_OPTIONS,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(workdir / "server.properties"),
            ],
            log_path=log,
            cwd=workdir,
        )
        running = RunningService(
            name=self.name,
            pid=process.pid,
            endpoint=bootstrap,
            env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap},
            log=str(log),
            workdir=str(workdir),
            extra=dict(extra or {}),
        )
        wait_until(
            lambda: self.is_ready(running),
            timeout_s=READY_TIMEOUT_S,
            what=f"kafka on {bootstrap}",
            pid=process.pid,
            log_path=log,
        )
        return running

    def is_ready(self, running: RunningService) -> bool:
        return broker_reachable(running.endpoint, timeout_s=2.0)

    @staticmethod
    def _format_storage(java: str, classpath: str, properties: Path) -> None:
        def tool(*args: str) -> str:
            result = subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", *args],
                capture_output=True,
                text=True,
                timeout=FORMAT_TIMEOUT_S,
            )
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
                raise StackError(f"kafka storage tool {args[0]} failed: {tail[0][:300]}")
            return result.stdout.strip()

        cluster_id = tool("random-uuid").splitlines()[-1]
        tool("format", "-t", cluster_id, "-c", str(properties))


@contextmanager
def scratch_broker(prefix: str) -> Iterator[RunningService]:
    """A broker of its own in a temporary directory, stopped and removed on leaving: for the
    lab's one-off measurements, which must not share a broker with anything."""
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        broker = KafkaService().start(Path(workdir))
        try:
            yield broker
        finally:
            stop_process_group(broker.pid)


def _jaas_users(users: Mapping[str, str]) -> str:
    """``user_<name>="<password>"`` entries; JAAS has no escaping, so quotes are refused."""
    for name, password in users.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or re.search(r'["\\\s;]', password):
            raise StackError(f"SASL user {name!r}: names are plain words, passwords unquoted")
    return " ".join(f'user_{name}="{password}"' for name, password in users.items())


def broker_reachable(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when a broker answers a metadata request within ``timeout_s``."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOGGER}
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True
