"""One way to open a bus from a URL, for `baton up` and every CLI command alike.

- `embedded`: the SQLite bus in the home directory (`<home>/bus.db`), the default.
- `kafka://HOST:PORT[,HOST:PORT...][?partitions=N&replication=R&namespace=NS&deployment=D]`:
  a Kafka cluster. `partitions` is the count of the topics an open creates (default
  events.topics.DEFAULT_PARTITIONS); a count is fixed when its topic is created, so a
  `partitions` that existing topics do not have is refused (drop it, or use a new `namespace`),
  and so is a log whose topics no longer have the counts recorded in it when it was written
  (`<NS>baton.topology`, see kafka_topology.py). `replication` only matters when topics are
  created. `namespace` prefixes every topic name (`NS.baton.runs`) and, unless `deployment` is
  given, also names the transactional ids, so deployments on one cluster never fence each
  other.

On Kafka only the streams live in Kafka; projections and artifacts stay in the home directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from bus.embedded import EmbeddedBus
from bus.protocol import Bus, BusError

EMBEDDED: Final = "embedded"
EMBEDDED_FILE: Final = "bus.db"
"""The embedded bus's file inside a home directory."""
KAFKA_SCHEME: Final = "kafka"
_KAFKA_OPTIONS: Final = frozenset({"partitions", "replication", "namespace", "deployment"})


class BusUrlError(BusError, ValueError):
    """A bus URL that names no bus we can open; the message says what a valid one looks like."""


@dataclass(frozen=True)
class KafkaUrl:
    bootstrap: str
    partitions: int | None = None
    """None: not given (existing topics keep their counts, new ones get DEFAULT_PARTITIONS)."""
    replication: int = 1
    namespace: str = ""
    deployment: str = "default"


def parse_bus_url(url: str) -> KafkaUrl | None:
    """None for the embedded bus, the Kafka settings otherwise; BusUrlError if it is neither."""
    if url == EMBEDDED:
        return None
    usage = (f"bus {url!r} is not 'embedded' or "
             "'kafka://HOST:PORT[,HOST:PORT...][?partitions=N&namespace=NS]'")
    parts = urlsplit(url)
    if parts.scheme != KAFKA_SCHEME or not parts.netloc or parts.path not in ("", "/") \
            or parts.fragment:
        raise BusUrlError(usage)
    hosts = parts.netloc.split(",")
    for host in hosts:
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise BusUrlError(f"{usage}: {host!r} is not HOST:PORT")
    try:
        options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)) \
            if parts.query else {}
    except ValueError:
        raise BusUrlError(f"{usage}: cannot parse the options {parts.query!r}") from None
    unknown = sorted(set(options) - _KAFKA_OPTIONS)
    if unknown:
        raise BusUrlError(f"{usage}: unknown option(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_KAFKA_OPTIONS))})")
    counts: dict[str, int] = {}
    for name in ("partitions", "replication"):
        if name in options:
            value = options[name]
            if not value.isdigit() or int(value) <= 0:
                raise BusUrlError(f"{usage}: {name} must be a positive integer, got {value!r}")
            counts[name] = int(value)
    namespace = options.get("namespace", "")
    if namespace and not namespace.endswith("."):
        namespace += "."
    deployment = options.get("deployment") or namespace.rstrip(".") or "default"
    return KafkaUrl(",".join(hosts), namespace=namespace, deployment=deployment, **counts)


async def open_bus_url(url: str, home: Path) -> Bus:
    """The bus `url` names; the embedded one lives in `home` (which must exist)."""
    kafka = parse_bus_url(url)
    if kafka is None:
        return await EmbeddedBus.open(home / EMBEDDED_FILE)
    # Here, not at the top: only a Kafka URL pays for importing aiokafka (see __init__).
    from bus.kafka import KafkaBus

    return await KafkaBus.open(kafka.bootstrap, partitions=kafka.partitions,
                               replication=kafka.replication, deployment=kafka.deployment,
                               namespace=kafka.namespace)
