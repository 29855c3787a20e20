"""`baton monitor drift`: compare a batch with a model's training data, publish drift if any.

Its own module: the statistics need numpy, which no other command that publishes should load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.cli.context import publish_record
from orchestrator.cli.errors import NotFound
from orchestrator.cli.given import Given
from orchestrator.cli.options import file_facts
from orchestrator.cli.projection import caught_up_projection
from orchestrator.monitor.check import (
    DriftCheck,
    drift_record,
    path_of,
    run_check,
    training_data_uri,
)
from orchestrator.store.projections import connect, list_models


def add_monitor(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="monitor", required=True, parser_class=type(p))
    d = sub.add_parser("drift", help="compare a batch with a model's training data")
    d.add_argument("--model", required=True)
    d.add_argument("--batch", required=True, help=".npz (array X) or .npy of new data")
    d.add_argument("--reference", help="training data (default: from the model's lineage)")
    d.add_argument("--method", choices=["psi", "ks"], default="psi")
    d.add_argument("--threshold", type=float, default=0.2)
    d.add_argument("--retrain-on", help="dataset the retraining run should use (default: batch)")
    d.add_argument("--retrain-version", help="version name of that dataset")
    d.add_argument("--dry-run", action="store_true", help="report only, publish nothing")
    d.set_defaults(handler=monitor_drift)


async def monitor_drift(args: argparse.Namespace) -> int:
    conn = await connect(await caught_up_projection(args))
    try:
        versions = [m for m in await list_models(conn) if m["model"] == args.model]
    finally:
        await conn.close()
    if not versions:
        raise NotFound(f"no registered model {args.model!r} (see 'baton models')")
    model = versions[-1]
    reference = Path(args.reference) if args.reference else path_of(training_data_uri(model))
    retrain = None if args.retrain_on is None else file_facts(args.retrain_on, "--retrain-on")[0]
    check = DriftCheck(model=model, reference=reference, batch=Path(args.batch),
                       method=args.method, threshold=args.threshold, retrain_uri=retrain,
                       retrain_version=args.retrain_version)
    given = Given("the drift_detected event", {
        "data.dataset_version": "--retrain-version", "data.dataset_uri": "--retrain-on",
        "data.threshold": "--threshold",
    }, {"--retrain-version": args.retrain_version, "--retrain-on": args.retrain_on,
        "--threshold": args.threshold})
    with given.checking():
        report, event = run_check(check)
        record = None if event is None else drift_record(event)
    top = ", ".join(f"{k}={v:.3f}" for k, v in report.top(5))
    print(f"{args.method} drift: {len(report.drifted_features)}/{len(report.scores)} features "
          f"over {args.threshold}; max {report.max_score:.3f} ({top})")
    if record is None or args.dry_run:
        print("no drift event published" + (" (dry run)" if args.dry_run else ""))
        return 0
    env, outgoing = record
    await publish_record(args, outgoing)
    print(f"published drift_detected {env.id} for {args.model} v{model['version']}")
    return 0
