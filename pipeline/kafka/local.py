"""A real single-node Apache Kafka broker (KRaft mode) on this machine, without Docker.

The broker jars come from Maven Central at the pinned version (`LocalKafkaSettings.version`), resolved by
Maven into a cache outside git. Storage is formatted once and kept across restarts under `home/data`;
`home/logs/server.log` has the broker's log. Used by `make run`, `riskstream kafka ...` and the test fixtures.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import LocalKafkaSettings

POM = Path(__file__).with_name("pom.xml")


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says what to do."""


class MissingToolError(LocalKafkaError):
    pass


class FetchError(LocalKafkaError):
    pass


class PortInUseError(LocalKafkaError):
    pass


class StartError(LocalKafkaError):
    pass


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    version: str
    data_dir: Path


def free_port() -> int:
    """A port free on 127.0.0.1 right now: a throwaway broker (tests, benchmarks) starts on such ports so
    it never meets the developer's broker on 9092."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


class LocalKafka:
    def __init__(self, settings: LocalKafkaSettings) -> None:
        self.settings = settings
        self.home = settings.home
        self.libs = settings.cache_dir / settings.version / "libs"
        self.data_dir = self.home / "data"
        self.log_dir = self.home / "logs"
        self.pid_file = self.home / "broker.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.port}"

    # -- jars -------------------------------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Resolve the broker and its runtime dependencies with Maven (once per version)."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                raise MissingToolError(
                    f"`{tool}` is not installed: run `make setup` (or apt-get install default-jre-headless maven)"
                )
        tmp = self.libs.with_name("libs.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cmd = [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={self.settings.version}",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        jars = list(tmp.glob("kafka_2.13-*.jar"))
        if result.returncode != 0 or not jars:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise FetchError(f"Maven could not fetch Apache Kafka {self.settings.version} from Maven Central:\n{tail}")
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)
        marker.touch()
        return self.libs

    # -- lifecycle --------------------------------------------------------------------------------------
    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        log4j = self.home / "log4j.properties"
        return [
            "java",
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{s.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{s.port},CONTROLLER://127.0.0.1:{s.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "log.segment.bytes=134217728",
                    "delete.topic.enable=true",
                    "",
                ]
            )
        )
        (self.home / "log4j.properties").write_text(
            "\n".join(
                [
                    "log4j.rootLogger=INFO, file",
                    "log4j.appender.file=org.apache.log4j.RollingFileAppender",
                    f"log4j.appender.file.File={self.log_dir}/server.log",
                    "log4j.appender.file.MaxFileSize=20MB",
                    "log4j.appender.file.MaxBackupIndex=3",
                    "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
                    "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
                    "log4j.logger.kafka.request.logger=WARN",
                    "log4j.logger.org.apache.kafka.controller=WARN",
                    "",
                ]
            )
        )
        return props

    def _format_once(self, props: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = uuid.uuid4().bytes
        import base64

        # A leading "-" would be read by the storage tool as an option (1 start in 64 failed).
        cid = "A" + base64.urlsafe_b64encode(cluster_id).decode().rstrip("=")[1:]
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cid, "-c", str(props)),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StartError(f"formatting KRaft storage failed:\n{result.stdout}{result.stderr}")

    def _read_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def status(self) -> BrokerStatus:
        pid = self._read_pid()
        return BrokerStatus(
            running=pid is not None and _port_open(self.settings.port),
            pid=pid,
            bootstrap=self.bootstrap,
            version=self.settings.version,
            data_dir=self.data_dir,
        )

    def start(self) -> BrokerStatus:
        """Start the broker and wait until it answers; a no-op when ours is already running."""
        if self._read_pid() is not None:
            self._wait_ready(self._read_pid())
            return self.status()
        for port in (self.settings.port, self.settings.controller_port):
            if _port_open(port):
                raise PortInUseError(
                    f"port {port} is already in use by another process; stop it or set "
                    "RISKSTREAM_LOCAL_KAFKA__PORT / RISKSTREAM_LOCAL_KAFKA__CONTROLLER_PORT"
                )
        if shutil.which("java") is None:
            raise MissingToolError(
                "`java` is not installed: run `make setup` (or apt-get install default-jre-headless)"
            )
        self.ensure_jars()
        props = self._write_config()
        self._format_once(props)
        stdout = (self.log_dir / "stdout.log").open("ab")
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap=self.settings.heap),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        self._wait_ready(proc.pid)
        return self.status()

    def _wait_ready(self, pid: int | None) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + self.settings.start_timeout_seconds
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            if pid is not None and not _pid_alive(pid):
                raise StartError(f"the broker exited during start-up; last log lines:\n{self.log_tail()}")
            if _port_open(self.settings.port):
                try:
                    metadata = admin.list_topics(timeout=2)
                    if metadata.brokers:
                        return
                except Exception:  # noqa: S110 - not ready yet; retried until the deadline
                    pass
            time.sleep(0.3)
        raise StartError(
            f"the broker did not answer within {self.settings.start_timeout_seconds:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )

    def stop(self, timeout_seconds: float = 30.0) -> bool:
        """Stop cleanly (SIGTERM, then SIGKILL after the timeout). Returns False if nothing was running."""
        pid = self._read_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.1)
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child (tests start and stop it)
            os.waitpid(pid, os.WNOHANG)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (reliability tests)."""
        pid = self._read_pid()
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
            self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        for name in ("server.log", "stdout.log"):
            path = self.log_dir / name
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no broker log yet)"
