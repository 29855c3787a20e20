"""Topic names and the one partitioner every producer uses (Kafka's murmur2: clients agree)."""

from typing import Final

TRIGGERS: Final = "baton.triggers"
PIPELINE_TRIGGERS: Final = "baton.pipeline-triggers"
TRIGGER_LOG: Final = "baton.trigger-log"
INTENTS: Final = "baton.intents"
REPORTS: Final = "baton.reports"
RUNS: Final = "baton.runs"
COMMANDS: Final = "baton.commands"
AGENTS: Final = "baton.agents"
MODELS: Final = "baton.models"
MODEL_REQUESTS: Final = "baton.model-requests"
SERVING: Final = "baton.serving"
SNAPSHOTS: Final = "baton.snapshots"
PIPELINES: Final = "baton.pipelines"
DLQ: Final = "baton.dlq"

ALL_TOPICS: Final = (
    TRIGGERS, PIPELINE_TRIGGERS, TRIGGER_LOG, INTENTS, REPORTS, RUNS,
    COMMANDS, AGENTS, MODELS, MODEL_REQUESTS, SERVING, SNAPSHOTS, PIPELINES, DLQ,
)
# Partition groups: these three must always have the same partition count.
GROUP_TOPICS: Final = (INTENTS, REPORTS, RUNS)
DEFAULT_PARTITIONS: Final = 12


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = int.from_bytes(data[i4 : i4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length4 * 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, n: int) -> int:
    """The partition of `key` among `n`, identical to Kafka's default partitioner."""
    if n <= 0:
        raise ValueError(f"partition count must be positive, got {n}")
    return (murmur2(key.encode()) & 0x7FFFFFFF) % n
