"""`baton monitor drift`: compare a batch with a model's training data, publish drift if any.

Its own module: the statistics need numpy, which no other command that publishes should load.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from orchestrator.cli.context import open_bus, publish_trigger_env
from orchestrator.cli.errors import NotFound, UsageError
from orchestrator.cli.given import Given
from orchestrator.cli.options import file_facts
from orchestrator.cli.projection import caught_up_projection
from orchestrator.cli.scheduling import positive_seconds
from orchestrator.monitor.check import (
    DriftCheck,
    drift_event,
    drift_record,
    load_features,
    path_of,
    run_check,
    training_data_uri,
)
from orchestrator.monitor.drift import compare_histograms, histograms
from orchestrator.monitor.serving import served
from orchestrator.store.projections import connect, list_models


def add_monitor(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="monitor", required=True, parser_class=type(p))
    d = sub.add_parser("drift", help="compare a batch, or what the model's gateways were asked, "
                                     "with its training data")
    d.add_argument("--model", required=True)
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument("--batch", help=".npz (array X) or .npy of new data")
    source.add_argument("--from-serving", action="store_true",
                        help="what `baton serve` gateways were asked (the input histograms of "
                             "their windows on baton.serving) instead of a batch")
    d.add_argument("--since", type=positive_seconds, default=600.0, metavar="SECONDS",
                   help="with --from-serving: the windows that ended this recently "
                        "(default 600)")
    d.add_argument("--version", type=int, metavar="V",
                   help="with --from-serving: the windows of the version that answered as "
                        "the alias's holder (default: the newest window's)")
    d.add_argument("--min-rows", type=int, default=500,
                   help="with --from-serving: fewer rows asked than this is too little to "
                        "judge (default 500)")
    d.add_argument("--reference", help="training data (default: from the model's lineage)")
    d.add_argument("--method", choices=["psi", "ks"], default="psi")
    d.add_argument("--threshold", type=float, default=0.2,
                   help="a feature moved when its score (PSI, or KS's D) is over this "
                        "(default 0.2)")
    d.add_argument("--min-share", type=float, default=0.05, metavar="F",
                   help="drift when at least this share of the features moved (default 0.05: "
                        "one noisy feature of many is not drift)")
    d.add_argument("--alpha", type=float, metavar="A",
                   help="with --method ks on a batch: a feature moved only when the KS test "
                        "says so too, its p-value (Holm-adjusted across the features) under A "
                        "(e.g. 0.01); --threshold 0 leaves the test alone to decide")
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
    if args.alpha is not None and (args.method != "ks" or not 0 < args.alpha < 1
                                   or args.from_serving):
        raise UsageError(f"--alpha {args.alpha:g}: the KS test's significance, between 0 and "
                         "1, with --method ks on a --batch")
    if not 0 < args.min_share <= 1:
        raise UsageError(f"--min-share {args.min_share:g}: the share of features that must "
                         "move, above 0 and at most 1 (e.g. 0.1)")
    if args.from_serving:
        return await _from_serving(args, versions)
    model = versions[-1]
    reference = Path(args.reference) if args.reference else path_of(training_data_uri(model))
    retrain = None if args.retrain_on is None else file_facts(args.retrain_on, "--retrain-on")[0]
    check = DriftCheck(model=model, reference=reference, batch=Path(args.batch),
                       method=args.method, threshold=args.threshold, retrain_uri=retrain,
                       retrain_version=args.retrain_version, alpha=args.alpha,
                       min_share=args.min_share)
    given = _given(args)
    with given.checking():
        report, event = run_check(check)
        record = None if event is None else drift_record(event)
    top = ", ".join(f"{k}={v:.3f}" + (f" (p {report.p_values[k]:.2g})" if report.p_values
                                      else "") for k, v in report.top(5))
    tested = f" and significant at {report.alpha:g} (Holm)" if report.alpha else ""
    print(f"{args.method} drift: {len(report.drifted_features)}/{len(report.scores)} features "
          f"over {args.threshold}{tested}; max {report.max_score:.3f} ({top})")
    if record is None or args.dry_run:
        print("no drift event published" + (" (dry run)" if args.dry_run else ""))
        return 0
    env, _ = record
    await publish_trigger_env(args, env)
    print(f"published drift_detected {env.id} for {args.model} v{model['version']}")
    return 0


async def _from_serving(args: argparse.Namespace, versions: list[dict[str, Any]]) -> int:
    """The drift of what the gateways were asked, against the training data of the version
    that answered; published with --retrain-on as the data to retrain on."""
    if args.retrain_on is None and not args.dry_run:
        raise UsageError("--from-serving publishes a drift event that names the data to "
                         "retrain on: give --retrain-on PATH (or --dry-run to report only)")
    if args.min_rows < 1:
        raise UsageError(f"--min-rows {args.min_rows}: give a number of rows above 0")
    bus = await open_bus(args)
    try:
        seen = await served(bus, args.model, time.time() - args.since, args.version)
    finally:
        await bus.close()
    if seen.version is None or seen.rows < args.min_rows:
        print(f"too little serving traffic to judge: {seen.rows} rows asked of {args.model} in "
              f"the last {args.since:g}s (--min-rows {args.min_rows}); no drift event published")
        return 0
    model = next((m for m in versions if m["version"] == seen.version), None)
    if model is None:
        raise NotFound(f"{args.model} v{seen.version} answered, but is not registered here")
    reference = Path(args.reference) if args.reference else path_of(training_data_uri(model))
    report = compare_histograms(histograms(load_features(reference)),
                                [dict(c) for c in seen.columns], method=args.method,
                                threshold=args.threshold,
                                min_drifted_fraction=args.min_share)
    top = ", ".join(f"{k}={v:.3f}" for k, v in report.top(5))
    print(f"{args.method} drift of what v{seen.version} was asked ({seen.rows} rows, "
          f"{seen.windows} windows of {len(seen.gateways)} gateway(s)): "
          f"{len(report.drifted_features)}/{len(report.scores)} features over "
          f"{args.threshold}; max {report.max_score:.3f} ({top})")
    if not report.drifted or args.dry_run:
        print("no drift event published" + (" (dry run)" if args.dry_run else ""))
        return 0
    retrain_uri = file_facts(args.retrain_on, "--retrain-on")[0]
    version = args.retrain_version or Path(args.retrain_on).stem
    given = _given(args)
    with given.checking():
        env, _ = drift_record(drift_event(model, report, retrain_uri, version))
    await publish_trigger_env(args, env)
    print(f"published drift_detected {env.id} for {args.model} v{model['version']}")
    return 0


def _given(args: argparse.Namespace) -> Given:
    """Which flag each field of the drift event came from, to name it when one is wrong."""
    return Given("the drift_detected event", {
        "data.dataset_version": "--retrain-version", "data.dataset_uri": "--retrain-on",
        "data.threshold": "--threshold",
    }, {"--retrain-version": args.retrain_version, "--retrain-on": args.retrain_on,
        "--threshold": args.threshold})
