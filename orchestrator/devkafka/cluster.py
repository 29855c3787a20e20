"""What a local KRaft cluster looks like: ports, directories and server.properties per node.

Kept apart from the processes so the layout can be read and tested without a JVM. Every node
is a combined broker + controller (as the official image runs), all on 127.0.0.1, with a
static controller quorum, so formatting needs no quorum flags.
"""

from __future__ import annotations

import base64
import random
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
BROKER_COUNTS = (1, 3)


@dataclass(frozen=True)
class NodeConfig:
    """One combined node: its id, client and controller ports, and its own directory."""

    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.directory / "data"

    @property
    def server_log(self) -> Path:
        return self.directory / "server.log"

    @property
    def jvm_output(self) -> Path:
        return self.directory / "jvm.out"

    def is_formatted(self) -> bool:
        return (self.log_dir / "meta.properties").exists()


@dataclass(frozen=True)
class ClusterConfig:
    """All nodes of one cluster; they share the quorum and the replication settings."""

    nodes: tuple[NodeConfig, ...]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)

    def node(self, node_id: int) -> NodeConfig:
        return next(n for n in self.nodes if n.node_id == node_id)

    def properties(self, node: NodeConfig) -> str:
        return "".join(f"{key}={value}\n" for key, value in self._settings(node).items())

    def _settings(self, node: NodeConfig) -> dict[str, object]:
        return {
            "node.id": node.node_id,
            "controller.quorum.voters": self.voters,
            "listeners": f"PLAINTEXT://{node.address},CONTROLLER://{HOST}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{node.address}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node.log_dir,
            **broker_settings(len(self.nodes)),
        }


def broker_settings(brokers: int) -> dict[str, object]:
    """Every setting but where a node lives (its id, addresses, directory): what the tests run
    with, and what compose.yaml gives the official image too (tests/deploy checks they agree)."""
    return {
        "process.roles": "broker,controller",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        **replication_settings(brokers),
        # Tests want a consumer group to form at once and internal topics to be small.
        "group.initial.rebalance.delay.ms": 0,
        "offsets.topic.num.partitions": brokers,
        "transaction.state.log.num.partitions": brokers,
        # A restarted node may re-register only once its old session has expired
        # (DUPLICATE_BROKER_REGISTRATION): 4 s instead of 9 s keeps fault tests short.
        "broker.session.timeout.ms": 4000,
        "broker.heartbeat.interval.ms": 500,
    }


def replication_settings(brokers: int) -> dict[str, object]:
    """One node can only keep one copy; three keep Kafka's defaults (3 copies, 2 in sync)."""
    factor, min_isr = (1, 1) if brokers == 1 else (3, 2)
    return {
        "default.replication.factor": factor,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": factor,
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": min_isr,
    }


def plan(data_dir: Path, brokers: int = 1, port: int | None = None) -> ClusterConfig:
    """Nodes `node-1`.. under data_dir; client ports from `port` upward, others free ones."""
    if brokers not in BROKER_COUNTS:
        raise ValueError(f"brokers must be 1 or 3, not {brokers}")
    ports = free_ports(2 * brokers, exclude=_requested(port, brokers))
    client = _requested(port, brokers) or ports[:brokers]
    return ClusterConfig(tuple(
        NodeConfig(i + 1, client[i], ports[brokers + i], data_dir / f"node-{i + 1}")
        for i in range(brokers)))


def _requested(port: int | None, brokers: int) -> list[int]:
    return [] if port is None else [port + i for i in range(brokers)]


def free_ports(count: int, exclude: list[int]) -> list[int]:
    """Ports free now (all held open together, so they are distinct), drawn at random below the
    kernel's ephemeral range: the JVM binds them seconds after they are closed here, and a port
    from that range could meanwhile become the local end of some other connection, or another
    program's "any free port" (a controller that cannot bind its port exits at start)."""
    top = min(_PLAIN_PORTS[1], _ephemeral_start())
    low = min(_PLAIN_PORTS[0], top - 1000)
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            candidate = _RANDOM.randrange(low, top)
            if candidate in exclude or candidate in [s.getsockname()[1] for s in sockets]:
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((HOST, candidate))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


_PLAIN_PORTS = (20000, 32768)
_RANDOM = random.SystemRandom()


def _ephemeral_start() -> int:
    """Where the kernel's ephemeral ports begin (Linux), or the usual start elsewhere."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def new_cluster_id() -> str:
    """A cluster id as `StorageTool random-uuid` makes one (url-safe base64 of 16 random bytes),
    without starting a JVM for it; Kafka refuses ids that start with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
