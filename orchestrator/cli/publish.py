"""`baton publish data-arrived|drift`: put a trigger event on the bus.

The event is built with the contract's models and its bytes checked with the consumers' own
decode (`events.codec.checked`) before the bus is opened: what the bus would refuse is a usage
error naming the flag (exit 2), and nothing is published. The cheapest command there is, and
meant to be run by data systems often: it imports nothing a run request or a monitor needs.
"""

from __future__ import annotations

import argparse

from events.codec import payload
from events.triggers import DataArrived, DriftDetected
from orchestrator.cli.context import publish_trigger_env
from orchestrator.cli.given import Given
from orchestrator.cli.options import file_facts, key_values, scalar
from orchestrator.printable import printable
from orchestrator.service.triggers import trigger_record


def add_publish(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, parser_class=type(p))
    da = sub.add_parser("data-arrived", help="a new version of a dataset is available")
    da.add_argument("--dataset", required=True)
    da.add_argument("--version", required=True, dest="dataset_version")
    da.add_argument("--uri", required=True, help="file path or URI of the data")
    da.add_argument("--event-id", help="idempotency: the same id never starts a second run "
                                       "(never collides with a `baton run --idempotency-key`)")
    da.add_argument("--rows", type=int, help="rows in this version (a condition's min_rows)")
    da.add_argument("--partition", action="append", default=[], metavar="K=V",
                    help="a partition key of this version, e.g. date=2026-12-01 (what a "
                         "condition over several datasets matches by; repeatable)")
    da.add_argument("--schema-fingerprint", help="the schema's fingerprint")
    da.add_argument("--meta", action="append", default=[], metavar="K=V",
                    help="metadata (numbers and true/false read as such; repeatable)")
    da.set_defaults(handler=publish_data_arrived)
    dr = sub.add_parser("drift", help="publish a drift event by hand (or: baton monitor drift)")
    dr.add_argument("--model", required=True)
    dr.add_argument("--dataset", required=True)
    dr.add_argument("--dataset-version", required=True)
    dr.add_argument("--dataset-uri", required=True)
    dr.add_argument("--score", type=float, required=True)
    dr.add_argument("--threshold", type=float, required=True)
    dr.add_argument("--method", choices=["psi", "ks"], default="psi")
    dr.add_argument("--event-id")
    dr.set_defaults(handler=publish_drift_event)


async def publish_data_arrived(args: argparse.Namespace) -> int:
    given = Given("the data_arrived event", {
        "id": "--event-id", "subject": "--dataset", "data.dataset": "--dataset",
        "data.version": "--version", "data.uri": "--uri",
        "data.rows": "--rows", "data.partition": "--partition",
        "data.schema_fingerprint": "--schema-fingerprint", "data.metadata": "--meta",
    }, {"--event-id": args.event_id, "--dataset": args.dataset,
        "--version": args.dataset_version, "--uri": args.uri, "--rows": args.rows,
        "--schema-fingerprint": args.schema_fingerprint})
    partition = key_values(args.partition, "--partition", "date=2026-12-01")
    metadata = {k: scalar(v) for k, v in key_values(args.meta, "--meta", "region=eu").items()}
    with given.checking():
        uri, sha, size = file_facts(args.uri, "--uri")
        event = payload(DataArrived, dataset=args.dataset, version=args.dataset_version,
                        uri=uri, sha256=sha, size=size, rows=args.rows, partition=partition,
                        schema_fingerprint=args.schema_fingerprint, metadata=metadata)
        env, _ = trigger_record(event, event_id=args.event_id)  # checked here, flags named
    await publish_trigger_env(args, env)
    print(printable(f"published data_arrived {env.id} for {args.dataset} "
                    f"{args.dataset_version}"))
    return 0


async def publish_drift_event(args: argparse.Namespace) -> int:
    given = Given("the drift_detected event", {
        "id": "--event-id", "subject": "--model", "data.model": "--model",
        "data.dataset": "--dataset", "data.dataset_version": "--dataset-version",
        "data.dataset_uri": "--dataset-uri", "data.score": "--score",
        "data.threshold": "--threshold",
    }, {"--event-id": args.event_id, "--model": args.model, "--dataset": args.dataset,
        "--dataset-version": args.dataset_version, "--dataset-uri": args.dataset_uri,
        "--score": args.score, "--threshold": args.threshold})
    with given.checking():
        uri, sha, _ = file_facts(args.dataset_uri, "--dataset-uri")
        event = payload(DriftDetected, model=args.model, dataset=args.dataset,
                        dataset_version=args.dataset_version, dataset_uri=uri,
                        dataset_sha256=sha, method=args.method, threshold=args.threshold,
                        score=args.score)
        env, _ = trigger_record(event, event_id=args.event_id)  # checked here, flags named
    await publish_trigger_env(args, env)
    print(printable(f"published drift_detected {env.id} for model {args.model}"))
    return 0
