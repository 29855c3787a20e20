"""The AsyncAPI document of Baton's topics, declared with FastStream and written by it.

Baton's Kafka bus is aiokafka by hand (`bus/kafka.py`): it needs one transaction
per consume -> decide -> produce batch, explicit partitions and a transactional id per
partition group, none of which FastStream gives. Where FastStream fits is describing that
interface to other teams: a `KafkaBroker` that is never connected declares one endpoint per
topic of `events.topic_types`, typed with the envelopes that travel on it, and FastStream's
generator turns the declaration into the document. The table stays the only place that says
which types go where; this module only says how to show it.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Final, Literal

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema, Reference
from faststream.specification.asyncapi.v3_0_0.schema.message import CorrelationId, Message
from pydantic import Field

from bus.kafka_topics import TOPIC_CONFIGS
from events.dlq import DeadLetter
from events.topic_types import TOPIC_SPECS, TopicSpec, wire_envelope

ASYNCAPI_VERSION: Final = "3.0.0"
"""What FastStream 0.7 writes by default; 2.6.0 would lose the send/receive operations."""
Format = Literal["json", "yaml"]
FORMATS: Final[tuple[Format, ...]] = ("json", "yaml")
DEFAULT_SERVERS: Final = ("localhost:9092",)
KAFKA_BINDING_VERSION: Final = "0.4.0"
"""The Kafka bindings version FastStream writes for channels; messages use the same."""
SNAPSHOT: Final = "application/zlib"
"""A snapshot: zlib-compressed JSON (orchestrator/service/snapshot_codec.py)."""
_TOPIC_NAME: Final = re.compile(r"[A-Za-z0-9._-]*")

DESCRIPTION: Final = "\n\n".join((
    "Baton's Kafka topics and the records on each.",
    "Channels are described from Baton's control plane (coordinators, the trigger fan-out "
    "and router, the model registry): a **receive** operation is a topic others write (data "
    "systems, API clients, agents) and the control plane consumes; a **send** operation is a "
    "topic the control plane writes.",
    "Every JSON record except a dead letter is an envelope (`id`, `type`, `version`, `time`, "
    "`source`, `subject`, `correlation_id`, `causation_id`, `traceparent`, `sequence`) whose "
    "`data` is the payload named by `type`; the schemas pin `type` and `version` per payload. "
    "A reader rejects unknown types, newer versions and unknown fields, and dead-letters what "
    "it cannot read with the reason.",
    "Record keys and partitions are in each channel's description and in the Kafka message "
    "bindings: `baton.intents`, `baton.reports` and `baton.runs` share one partition count, "
    "and a run lives in partition k = murmur2(run id) mod n of all three.",
))


def declare(broker: KafkaBroker, namespace: str = "") -> None:
    """One publisher (send) or subscriber (receive) per Baton topic, typed with its records."""
    for spec in TOPIC_SPECS:
        address = namespace + spec.topic
        description = channel_description(spec)
        if spec.direction == "in":
            subscriber = broker.subscriber(address, title=address, description=description)
            subscriber(_declared_consumer(payload_type(spec)))
        else:
            broker.publisher(address, title=address, description=description,
                             schema=payload_type(spec))


def payload_type(spec: TopicSpec) -> Any:
    """The type of one record's value: a union of envelopes told apart by their `type`."""
    if spec.record == "binary":
        return bytes
    if spec.record == "dead_letter":
        return DeadLetter
    models = [wire_envelope(cls) for cls in spec.types]
    if len(models) == 1:
        return models[0]
    return Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]


def channel_description(spec: TopicSpec) -> str:
    config = ", ".join(f"{k}={v}" for k, v in TOPIC_CONFIGS.get(spec.topic, {}).items())
    return (f"{spec.summary}\n\nKey: {spec.key}. Partition: {spec.partitioning}.\n"
            f"Written by {spec.written_by}; read by {spec.read_by}."
            + (f"\nTopic configuration: {config}." if config else ""))


def _declared_consumer(payload: Any) -> Callable[[Any], Awaitable[None]]:
    """A handler that only carries the payload type for FastStream's schema of a subscriber.

    The broker it is registered on is never started: Baton consumes with its own bus.
    """

    async def consume(record: Any) -> None:
        return None

    consume.__annotations__ = {"record": payload, "return": None}
    return consume


def build(servers: Sequence[str] = DEFAULT_SERVERS, namespace: str = "") -> ApplicationSchema:
    """The AsyncAPI document for a deployment on `servers` whose topics carry `namespace`."""
    if not _TOPIC_NAME.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} cannot prefix a Kafka topic name "
                         "(letters, digits, '.', '_' and '-' only)")
    broker = KafkaBroker(list(servers), description="Baton's Kafka cluster")
    declare(broker, namespace)
    spec = AsyncAPI(broker, title="Baton", version=_baton_version(), description=DESCRIPTION,
                    schema_version=ASYNCAPI_VERSION).to_specification()
    if not isinstance(spec, ApplicationSchema):
        raise TypeError(f"FastStream wrote {type(spec).__name__}, not AsyncAPI 3")
    addresses = [namespace + topic_spec.topic for topic_spec in TOPIC_SPECS]
    for address, topic_spec in zip(addresses, TOPIC_SPECS, strict=True):
        _describe_messages(spec, address, topic_spec)
    # FastStream lists subscribers before publishers; readers expect the flow's order.
    spec.channels = {address: spec.channels[address] for address in addresses}
    spec.operations = {address: spec.operations[address] for address in addresses}
    return spec


def _describe_messages(doc: ApplicationSchema, address: str, spec: TopicSpec) -> None:
    """What FastStream cannot be told through a declaration: where the record key, the
    correlation id and the headers are (FastStream assumes its own correlation header)."""
    channel = doc.channels[address]
    messages = doc.components.messages if doc.components else None
    for ref in channel.messages.values():
        name = ref.ref.rsplit("/", 1)[-1] if isinstance(ref, Reference) else None
        message = messages.get(name) if messages and name else ref
        if not isinstance(message, Message):
            raise TypeError(f"channel {address} has no message FastStream described")
        message.correlationId = (
            CorrelationId(location="$message.payload#/correlation_id",
                          description="groups the records one trigger or request caused; "
                                      "causation_id names the record that caused this one")
            if spec.record == "envelope" else None)
        message.contentType = SNAPSHOT if spec.record == "binary" else None
        extra: dict[str, Any] = {"bindings": {"kafka": {
            "key": {"type": "string", "description": spec.key},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }}}
        if spec.headers:
            extra["headers"] = {
                "type": "object",
                "properties": {h: {"type": "string", "description": meaning}
                               for h, meaning in spec.headers.items()},
                "required": list(spec.headers),
            }
        for field_name, value in extra.items():
            setattr(message, field_name, value)


def render(doc: ApplicationSchema, fmt: Format) -> str:
    if fmt == "yaml":
        return doc.to_yaml()
    return json.dumps(doc.to_jsonable(), indent=2) + "\n"


def _baton_version() -> str:
    try:
        return version("baton")
    except PackageNotFoundError:
        return "0.0.0"
