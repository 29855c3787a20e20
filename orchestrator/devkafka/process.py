"""Broker JVMs: format storage, start, wait until they answer, stop, kill and restart.

The JVMs are plain `subprocess.Popen` children (not asyncio subprocesses) so a cluster
started in one event loop can be stopped, killed or restarted from another, as a
session-scoped test fixture needs. Each runs in its own session: a Ctrl-C in the terminal
reaches only Baton, which then stops the brokers in order instead of racing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from orchestrator.devkafka.classpath import LOG4J_CONFIG, DevKafkaError, Runtime, resolve
from orchestrator.devkafka.cluster import ClusterConfig, NodeConfig, new_cluster_id, plan

HEAP = ["-Xmx512m", "-Xms512m"]
JVM_FLAGS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
             "-Djava.awt.headless=true"]
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0
_POLL_S = 0.1


def excerpt(path: Path, lines: int = 15) -> str:
    """A log's first errors (usually the cause) and its last lines (where it stopped): on
    a failed start the tail alone is shutdown chatter that hides why."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(unreadable)"
    errors = [line for line in text if " ERROR " in line or " FATAL " in line][:8]
    return "\n".join([*errors, "[...]", *text[-lines:]] if errors else text[-lines:])


class KafkaCluster:
    """Running broker JVMs of one cluster; `bootstrap` is what clients connect to."""

    def __init__(self, runtime: Runtime, config: ClusterConfig) -> None:
        self.runtime = runtime
        self.config = config
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def bootstrap(self) -> str:
        return self.config.bootstrap

    async def start(self, within_s: float = READY_TIMEOUT_S) -> None:
        """Format the storage if it is new, start every node, return once all answer."""
        await self._format_if_new()
        for node in self.config.nodes:
            self._spawn(node)
        await self.wait_ready(within_s)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM every node at once (a controlled shutdown), SIGKILL what outlives grace."""
        await asyncio.gather(*(self._stop_node(i, grace) for i in list(self._procs)))

    @property
    def running(self) -> list[int]:
        """Ids of the nodes started here that have not been stopped or killed."""
        return sorted(self._procs)

    async def kill(self, node_id: int) -> None:
        """SIGKILL one node: no shutdown hook runs, as when a machine dies."""
        proc = self._procs.pop(node_id)
        proc.kill()
        await _wait_exit(proc, STOP_GRACE_S)

    async def stop_node(self, node_id: int, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM one node (a controlled shutdown) and wait until its JVM has exited."""
        await self._stop_node(node_id, grace)

    async def start_node(self, node_id: int, within_s: float = READY_TIMEOUT_S) -> None:
        """Start a stopped or killed node again on its own ports and data dir, and wait
        until every running node answers (the restarted one included)."""
        if node_id in self._procs:
            raise DevKafkaError(f"Kafka node {node_id} is already running")
        self._spawn(self.config.node(node_id))
        await self.wait_ready(within_s)

    async def restart(self, node_id: int, within_s: float = READY_TIMEOUT_S) -> None:
        """Stop one node cleanly (if it runs), start it on the same ports and data, wait."""
        if node_id in self._procs:
            await self.stop_node(node_id)
        await self.start_node(node_id, within_s)

    async def wait_ready(self, within_s: float = READY_TIMEOUT_S) -> None:
        """Every port accepts and an admin client sees every broker; a JVM that exits, or
        a deadline that passes, is an error carrying the tail of the broker's log."""
        deadline = time.monotonic() + within_s
        while not await self._answers():
            self._check_alive()
            if time.monotonic() > deadline:
                raise DevKafkaError(f"Kafka did not answer on {self.bootstrap} within "
                                    f"{within_s:.0f} s\n{self._logs()}")
            await asyncio.sleep(_POLL_S)

    async def _answers(self) -> bool:
        for node in self.config.nodes:
            if node.node_id in self._procs and not await _accepts(node):
                return False
        return await _admin_sees(self.bootstrap, len(self._procs))

    def _check_alive(self) -> None:
        for node_id, proc in self._procs.items():
            if proc.poll() is not None:
                node = self.config.node(node_id)
                raise DevKafkaError(f"Kafka node {node_id} exited with code {proc.returncode} "
                                    f"while starting\n{self._logs(node)}")

    def _logs(self, *nodes: NodeConfig) -> str:
        chosen = nodes or self.config.nodes
        return "\n".join(f"--- {path} ---\n{excerpt(path)}" for node in chosen
                         for path in (node.server_log, node.jvm_output)
                         if path.exists() and path.stat().st_size)

    def _spawn(self, node: NodeConfig) -> None:
        node.properties_file.write_text(self.config.properties(node))
        command = [self.runtime.java, *HEAP, *JVM_FLAGS,
                   f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                   f"-Dkafka.logs.dir={node.directory}", "-cp", self.runtime.classpath,
                   "kafka.Kafka", str(node.properties_file)]
        with node.jvm_output.open("ab") as out:
            self._procs[node.node_id] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    async def _stop_node(self, node_id: int, grace: float) -> None:
        proc = self._procs.pop(node_id)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        if not await _wait_exit(proc, grace):
            proc.kill()
            await _wait_exit(proc, grace)

    async def _format_if_new(self) -> None:
        """Format every node with one new cluster id, or reuse storage formatted before."""
        formatted = _formatted_nodes(self.config)
        if formatted == {node.directory.name for node in self.config.nodes}:
            return
        if formatted:
            root = self.config.nodes[0].directory.parent
            raise DevKafkaError(f"{root} holds a {len(formatted)}-node cluster formatted "
                                f"before; pass --brokers {len(formatted)} or a new --data-dir")
        cluster_id = new_cluster_id()
        await asyncio.gather(*(self._format(node, cluster_id) for node in self.config.nodes))

    async def _format(self, node: NodeConfig, cluster_id: str) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        node.properties_file.write_text(self.config.properties(node))
        proc = await asyncio.create_subprocess_exec(
            self.runtime.java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp",
            self.runtime.classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id,
            "-c", str(node.properties_file), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            raise DevKafkaError(f"formatting {node.log_dir} failed (exit {proc.returncode}):\n"
                                f"{output.decode(errors='replace').strip()}")


def _formatted_nodes(config: ClusterConfig) -> set[str]:
    """Names of the node directories under the data dir that hold formatted storage."""
    root = config.nodes[0].directory.parent
    return {meta.parent.parent.name for meta in root.glob("node-*/data/meta.properties")}


async def _wait_exit(proc: subprocess.Popen[bytes], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_POLL_S)
    return True


async def _accepts(node: NodeConfig) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", node.port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _admin_sees(bootstrap: str, brokers: int) -> bool:
    """Listing topics proves the broker serves requests, not just that the port is bound."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        cluster = await admin.describe_cluster()
        return len(cluster["brokers"]) >= brokers
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def running_kafka(brokers: int = 1, data_dir: Path | None = None, port: int | None = None,
                        ready_within_s: float = READY_TIMEOUT_S
                        ) -> AsyncIterator[KafkaCluster]:
    """A real broker (or a 3-node cluster) on loopback for the duration of the block.

    Without `data_dir` the data lives in a temporary directory removed afterwards; with it,
    storage formatted before is reused (same cluster id, same topics). The JVMs are stopped
    on the way out, also when starting fails or the block is cancelled.
    """
    runtime = await resolve()
    with contextlib.ExitStack() as stack:
        root = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="baton-kafka-")))
        root.mkdir(parents=True, exist_ok=True)
        cluster = KafkaCluster(runtime, plan(root.resolve(), brokers, port))
        try:
            await cluster.start(ready_within_s)
            yield cluster
        finally:
            await cluster.stop()

