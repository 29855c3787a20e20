"""The real broker: transactions as the event log needs them, and `baton dev kafka` itself."""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import threading
import uuid
from pathlib import Path
from typing import IO

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from orchestrator.devkafka.cluster import free_ports, plan
from tests.e2e.support import REPO, baton, cli_env, command

READY_TIMEOUT_S = 90.0


async def new_topic(bootstrap: str) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def produce_transactions(bootstrap: str, topic: str,
                               batches: list[tuple[list[bytes], bool]]) -> None:
    """Each batch is one transaction, committed if its flag is True, else aborted."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                enable_idempotence=True, transactional_id=f"tx-{topic}")
    await producer.start()
    try:
        for values, commit in batches:
            await producer.begin_transaction()
            for value in values:
                await producer.send_and_wait(topic, value)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


async def read_to_end(bootstrap: str, topic: str) -> tuple[list[bytes], int, int]:
    """Every value a read_committed consumer yields up to the end; its position and the end."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                values += [record.value for record in batch.get(tp, []) if record.value]
        return values, await consumer.position(tp), end
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_read_committed_consumer_never_sees_an_aborted_transaction(
        kafka_bootstrap: str) -> None:
    # given a topic with a committed, an aborted and another committed transaction
    topic = await new_topic(kafka_bootstrap)
    await produce_transactions(kafka_bootstrap, topic, [
        ([b"c1", b"c2"], True), ([b"a1", b"a2"], False), ([b"c3"], True)])
    # when a read_committed consumer reads the partition to its end
    values, position, end = await read_to_end(kafka_bootstrap, topic)
    # then it has passed the aborted records and every marker, yielding only committed values
    assert values == [b"c1", b"c2", b"c3"]
    assert position == end == 8  # 5 records + 3 transaction markers


class Stdout:
    """Lines of a process's stdout, read by a thread so a test can wait with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        with stream:  # closed at EOF, when the process has exited
            for line in stream:
                self.lines.put(line)
        self.lines.put(None)

    def next_line(self, timeout: float) -> str | None:
        """The next line, or None once the process has closed its stdout (it exited)."""
        line = self.lines.get(timeout=timeout)
        return None if line is None else line.strip()


async def list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.kafka
async def test_dev_kafka_serves_on_its_port_and_exits_0_on_ctrl_c(tmp_path: Path) -> None:
    # given `baton dev kafka` started on a free port
    port = free_ports(1, exclude=[])[0]
    process = start_dev_kafka(port, tmp_path)
    try:
        # when it prints its bootstrap address
        bootstrap = Stdout(process).next_line(timeout=READY_TIMEOUT_S)
        # then the broker there answers, and Ctrl-C stops it with exit 0
        assert bootstrap == f"127.0.0.1:{port}", (tmp_path / "stderr").read_text()
        assert isinstance(await list_topics(bootstrap), list)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, (tmp_path / "stderr").read_text()
    finally:
        stop(process)


def start_dev_kafka(port: int, tmp_path: Path) -> subprocess.Popen[str]:
    args = ["dev", "kafka", "--port", str(port), "--data-dir", str(tmp_path / "kafka")]
    with (tmp_path / "stderr").open("w") as stderr:
        return subprocess.Popen(command(None, *args), cwd=REPO, env=cli_env(), text=True,
                                stdout=subprocess.PIPE, stderr=stderr)


def stop(process: subprocess.Popen[str]) -> None:
    """Teardown after a failure: SIGTERM lets baton stop its JVM; SIGKILL only as a last resort."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_dev_kafka_refuses_two_brokers_with_one_line_and_exit_2() -> None:
    # when `baton dev kafka` is asked for a broker count it cannot form a quorum with
    result = baton(None, "dev", "kafka", "--brokers", "2")
    # then it says so in one line, starts nothing and exits 2
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--brokers" in result.stderr and "Traceback" not in result.stderr


def test_three_node_plan_shares_one_static_quorum_and_keeps_three_copies(tmp_path: Path) -> None:
    # when a 3-broker cluster is planned from a given first client port
    config = plan(tmp_path, brokers=3, port=41000)
    # then every node names all three voters, and acks=all needs two copies in sync
    texts = [config.properties(node) for node in config.nodes]
    assert config.bootstrap == "127.0.0.1:41000,127.0.0.1:41001,127.0.0.1:41002"
    assert all(f"controller.quorum.voters={config.voters}\n" in text for text in texts)
    assert config.voters.count("@127.0.0.1:") == 3
    assert all("default.replication.factor=3\n" in t and "min.insync.replicas=2\n" in t
               and "transaction.state.log.min.isr=2\n" in t for t in texts)
