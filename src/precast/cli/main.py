"""The `precast` command line: demo data, steps and chains, lookups, status.

    precast demo-data --users 2000 --days 60 --seed 7   # or --until today: logs end today
    precast run training --date 2026-03-01
    precast run validate --dataset features --date 2026-03-01
    precast lookup u000001 u000002
    precast serve           # the lookup HTTP API (serve.host / serve.port)
    precast api-key alice   # a new API key for the lookup API, and its config entry
    precast usage --date 2026-03-01   # lookup API requests per key, model version, snapshot
    precast snapshots       # retained and past prediction snapshots
    precast rollback --to snapshot:12|model:4 --reason "..."
    precast promote --force --reason "..." [--version 7]    # or --pin / --unpin (audited)
    precast champions           # champion history: who made which version champion, why
    precast retrain --like 4    # retrain a version from its records; exit 0 when identical
    precast store setup --reader precast_reader --writer precast_writer   # PostgreSQL roles
    precast status
    precast init my_use_case    # a commented use-case skeleton: config, SQL, suites
    precast check           # dry-run the mapping and SQL on a sample of the newest raw day
    precast demo --use-case examples/shop   # any use case's folder (`make demo`: churn)
    precast airflow up      # Airflow's components on this machine (down, status)

Every command takes `--use-case DIR` (the use case's folder, holding precast.yaml) or
`--config PATH` (its config file; default ./precast.yaml) and honours PRECAST_HOME.
Exit status: 0 success, 1 a step or lookup failed, 2 bad usage or configuration,
3 a step failed in a way that retrying cannot fix (precast.errors.NotRetryable).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from precast.config import Config, ConfigError, config_path, load_config, redact_text
from precast.errors import EXIT_BAD_CONFIG, EXIT_INTERRUPTED, exit_code
from precast.runtime import configure_logging, prepare_environment

if TYPE_CHECKING:
    from precast.orchestration.local import LocalAirflow

log = logging.getLogger(__name__)

VALIDATE_DATASETS = {"events": "validate_events", "features": "validate_features",
                     "inference": "validate_inference", "predictions": "validate_predictions"}


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _until(text: str) -> date:
    """An ISO date, or `today` (the UTC date now)."""
    return datetime.now(UTC).date() if text == "today" else _date(text)


def _parser() -> argparse.ArgumentParser:
    from precast.pipeline import CHAINS, STEPS

    parser = argparse.ArgumentParser(prog="precast", description=__doc__.split("\n")[0])
    parser.add_argument("--config", "--use-case", dest="config", default=None,
                        help="the use case: its folder or its YAML config "
                             "(default ./precast.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    common = argparse.ArgumentParser(add_help=False)  # the same options after the command
    common.add_argument("--config", "--use-case", dest="config", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    demo_data = sub.add_parser("demo-data", parents=[common],
                               help="write generated raw logs into the lake")
    demo_data.add_argument("--users", type=int)
    demo_data.add_argument("--days", type=int)
    demo_data.add_argument("--seed", type=int)
    first_day = demo_data.add_mutually_exclusive_group()
    first_day.add_argument("--start-date", type=_date,
                           help="the first day (default demo.start_date)")
    first_day.add_argument("--until", type=_until, metavar="DATE|today",
                           help="the last day instead: the logs end on it (today: UTC), so "
                                "the daily DAGs find data for today")
    demo_data.add_argument("--corrupt-fraction", type=float)
    demo_data.add_argument("--drift-day", type=int)

    run = sub.add_parser("run", parents=[common],
                         help="run one step or a whole chain for a date")
    run.add_argument("target", choices=[*CHAINS, *STEPS, "validate"])
    run.add_argument("--date", type=_date, required=True, help="run (snapshot) date")
    run.add_argument("--dataset", choices=sorted(VALIDATE_DATASETS), help="for `validate`")
    run.add_argument("--tolerance", type=float, help="override gate.tolerance for this run")
    run.add_argument("--from", dest="start", metavar="STEP", help="resume a chain at STEP")

    lookup = sub.add_parser("lookup", parents=[common],
                            help="predictions for entity ids from predictions_current")
    lookup.add_argument("ids", nargs="+")

    sub.add_parser("status", parents=[common],
                   help="champion, current snapshot and the last run's steps")

    check = sub.add_parser("check", parents=[common],
                           help="dry-run the events mapping and the feature/label SQL on a "
                                "sample of the newest raw day (writes nothing)")
    check.add_argument("--date", type=_date, help="the raw day (default: the newest)")
    check.add_argument("--sample", type=int, default=10_000, help="lines read (default 10000)")

    serve = sub.add_parser("serve", parents=[common], help="run the lookup HTTP API")
    serve.add_argument("--host", help="bind address (default serve.host)")
    serve.add_argument("--port", type=int, help="port (default serve.port)")

    api_key = sub.add_parser("api-key", parents=[common],
                             help="make an API key for the lookup API (prints the key once "
                                  "and the serve.api_keys entry holding its hash)")
    api_key.add_argument("name", help="who holds it (shown in usage and logs)")

    usage = sub.add_parser("usage", parents=[common],
                           help="lookup API requests of one day per key, model version and "
                                "snapshot (<PRECAST_HOME>/<use case>/serve/usage/<day>.json)")
    usage.add_argument("--date", type=_date, help="the UTC day (default: today)")

    sub.add_parser("snapshots", parents=[common],
                   help="prediction snapshots: served, retained, retired, failed")

    rollback = sub.add_parser("rollback", parents=[common],
                              help="serve a retained snapshot again (or roll forward)")
    rollback.add_argument("--to", required=True, metavar="snapshot:ID|model:VERSION",
                          help="the snapshot, or the model version (its newest snapshot; the "
                               "champion alias moves too)")
    rollback.add_argument("--reason", required=True, help="why (recorded)")
    rollback.add_argument("--by", default=None, help="who (recorded; default: your user name)")

    promote = sub.add_parser("promote", parents=[common],
                             help="override the champion gate (recorded with who and why)")
    action = promote.add_mutually_exclusive_group(required=True)
    action.add_argument("--force", dest="action", action="store_const", const="force",
                        help="make --version (default: the challenger) the champion")
    action.add_argument("--pin", dest="action", action="store_const", const="pin",
                        help="freeze the champion: the gate rejects every challenger")
    action.add_argument("--unpin", dest="action", action="store_const", const="unpin",
                        help="release a pinned champion")
    promote.add_argument("--version", default=None, help="the model version (--force)")
    promote.add_argument("--reason", required=True, help="why (recorded)")
    promote.add_argument("--by", default=None, help="who (recorded; default: your user name)")

    sub.add_parser("champions", parents=[common],
                   help="champion history: which version, from when, decided by whom, why")

    retrain = sub.add_parser("retrain", parents=[common],
                             help="retrain a registered version from its recorded inputs and "
                                  "check the model bytes match (registers nothing)")
    retrain.add_argument("--like", required=True, metavar="MODEL_VERSION",
                         help="the registered version of model.name to reproduce")
    retrain.add_argument("--out", type=Path, default=None,
                         help="keep the retrained model here (default: a temporary folder)")

    store_cmd = sub.add_parser("store", parents=[common],
                               help="prediction store administration (PostgreSQL roles)")
    store_cmd.add_argument("action", choices=["setup"])
    store_cmd.add_argument("--reader", default="precast_reader", help="read-only group role")
    store_cmd.add_argument("--writer", default="precast_writer", help="publishing group role")

    airflow = sub.add_parser("airflow", parents=[common],
                             help="run Airflow's components on this machine (up, down, status)")
    airflow.add_argument("action", choices=["up", "down", "status"])

    init = sub.add_parser("init", parents=[common],
                          help="write a commented use-case skeleton into a folder")
    init.add_argument("folder", type=Path)
    init.add_argument("--name", help="the use case's name (default: the folder's)")

    demo = sub.add_parser("demo", parents=[common],
                          help="generate data, run training and predict, summarise")
    demo.add_argument("--users", type=int)
    demo.add_argument("--days", type=int)
    return parser


def cmd_demo_data(cfg: Config, args: argparse.Namespace) -> int:
    from precast.use_case import generator

    d = cfg.demo
    days = args.days or d.days
    start = (args.until - timedelta(days=days - 1) if args.until is not None
             else args.start_date or d.start_date)
    result = generator(cfg)(
        cfg.lake_root, users=args.users or d.users, days=days,
        seed=d.seed if args.seed is None else args.seed, start_date=start,
        corrupt_fraction=d.corrupt_fraction if args.corrupt_fraction is None
        else args.corrupt_fraction,
        drift_day=d.drift_day if args.drift_day is None else args.drift_day)
    last = start + timedelta(days=days - 1)
    print(f"wrote {sum(result.lines_per_day.values()):,} lines over "
          f"{len(result.lines_per_day)} days ({start} to {last}) to {cfg.lake.raw_events()}")
    return 0


def cmd_run(cfg: Config, args: argparse.Namespace) -> int:
    from precast import pipeline
    from precast.cli import console

    options = {"tolerance": args.tolerance} if args.tolerance is not None else {}
    if args.target in pipeline.CHAINS:
        pipeline.run_chain(cfg, args.target, args.date, on_step=console.print_step,
                           start=args.start, **options)
        return 0
    step = args.target
    if step == "validate":
        if not args.dataset:
            raise SystemExit("precast run validate needs --dataset events|features|predictions")
        step = VALIDATE_DATASETS[args.dataset]
    started = time.perf_counter()
    console.print_step(step, pipeline.run_step(cfg, step, args.date, **options),
                      time.perf_counter() - started)
    return 0


def cmd_lookup(cfg: Config, args: argparse.Namespace) -> int:
    from precast.cli import console
    from precast.serving.lookup import LookupClient

    with LookupClient(cfg.predictions_url) as client:
        rows = client.get(args.ids)
    console.print_lookups(rows)
    return 0 if all(r.found for r in rows) else 1


def cmd_status(cfg: Config, args: argparse.Namespace) -> int:
    from precast.cli import console

    console.print_status(cfg)
    return 0


def cmd_check(cfg: Config, args: argparse.Namespace) -> int:
    from precast.cli import check, console

    report = check.run(cfg, day=args.date, sample=args.sample)
    console.print_check(report)
    return 1 if report.problems else 0


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from precast.config import redact_url
    from precast.serving import api

    host, port = args.host or cfg.serve.host, args.port or cfg.serve.port
    api.preflight(cfg, host)
    print(f"precast lookup API on http://{host}:{port} (reading {redact_url(cfg.serve_url)}); "
          "Ctrl-C stops it", flush=True)
    return api.run(cfg, host=host, port=port)


def cmd_api_key(cfg: Config, args: argparse.Namespace) -> int:
    from precast.serving.access import key_hash, new_key

    key = new_key()
    print(f"API key for {args.name} (shown once; give it to them, keep only the hash):\n"
          f"  {key}\nadd to precast.yaml under serve:\n  api_keys:\n"
          f"    - {{name: {args.name}, sha256: {key_hash(key)}}}")
    return 0


def cmd_usage(cfg: Config, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from precast.serving.usage import read_usage

    day = args.date or datetime.now(UTC).date()
    rows = read_usage(cfg.space / "serve" / "usage", day)
    print(f"lookup API usage on {day} (UTC), flushed every {cfg.serve.usage_flush_s:g} s:")
    print(f"{'key':<20} {'endpoint':<9} {'model':<24} {'snapshot':>8} {'requests':>9} "
          f"{'ids':>9}")
    for row in rows:
        model = f"{row['model_name']} v{row['model_version']}"
        print(f"{row['key']:<20} {row['endpoint']:<9} {model:<24} {row['snapshot_id']!s:>8} "
              f"{row['requests']:>9} {row['ids']:>9}")
    return 0 if rows else 1


def cmd_snapshots(cfg: Config, args: argparse.Namespace) -> int:
    from precast import store
    from precast.cli import console

    console.print_snapshots(store.snapshots(cfg.predictions_url))
    return 0


def cmd_rollback(cfg: Config, args: argparse.Namespace) -> int:
    import getpass

    from precast.cli import console
    from precast.steps import rollback

    result = rollback.run(cfg, args.to, by=args.by or getpass.getuser(), reason=args.reason)
    console.print_rollback(result)
    return 0


def cmd_promote(cfg: Config, args: argparse.Namespace) -> int:
    import getpass

    from precast.steps import promote

    result = promote.run(cfg, args.action, version=args.version, reason=args.reason,
                         by=args.by or getpass.getuser())
    was = f" (champion was v{result.previous_champion})" if result.previous_champion else ""
    print(f"{result.action}: {result.model_name} v{result.model_version}{was}, recorded as "
          f"decided by {result.decided_by}: {result.reason}")
    return 0


def cmd_champions(cfg: Config, args: argparse.Namespace) -> int:
    from precast.cli import console
    from precast.gate import champions

    console.print_champions(champions.history(cfg.predictions_url, cfg.model.name))
    return 0


def cmd_retrain(cfg: Config, args: argparse.Namespace) -> int:
    from precast.steps import retrain

    r = retrain.run(cfg, args.like, out=args.out)
    print(f"retrained {r.model_name} v{r.model_version} (run date {r.run_date}, data version "
          f"{r.data_version}, device {r.device}, code {r.code_version}, recorded "
          f"{r.recorded_code_version})")
    print(f"model sha256 recorded {r.recorded_sha256 or '-'}, retrained {r.retrained_sha256}; "
          f"max score difference {r.max_score_diff:.3g}" + (f"; kept in {r.model_dir}"
                                                          if r.model_dir else ""))
    if r.reproduced:
        print("reproduced: " + ("the model bytes are identical" if r.bytes_identical else
                                f"{r.agreement} within {retrain.GPU_AUC_TOLERANCE} on {r.device}"))
        return 0
    print(f"precast: retrain: v{r.model_version} NOT reproduced: the model bytes differ"
          f" ({r.agreement} difference {r.auc_diff:.3g}); "
          + ("the code version differs from the recorded one"
             if r.code_version != r.recorded_code_version
             else "same code version: look for nondeterminism"), file=sys.stderr)
    return 1


def cmd_store(cfg: Config, args: argparse.Namespace) -> int:
    from precast import store

    for line in store.setup(cfg.predictions_url, reader=args.reader, writer=args.writer):
        print(line)
    return 0


def cmd_demo(cfg: Config, args: argparse.Namespace) -> int:
    users, days = args.users or cfg.demo.users, args.days or cfg.demo.days
    run_date = cfg.demo.start_date + timedelta(days=days - 1)
    return run_demo(cfg, users, days, run_date)


def cmd_init(cfg: Config, args: argparse.Namespace) -> int:
    from precast.use_case import init

    written = init(args.folder, args.name)
    print("\n".join(f"wrote {path}" for path in written))
    print(f"next: put raw logs under the lake (see {written[0].name}), edit the mapping, then "
          f"`precast --use-case {args.folder} check`")
    return 0


def cmd_airflow(cfg: Config, args: argparse.Namespace) -> int:
    from precast.orchestration.local import LocalAirflow

    return airflow_action(LocalAirflow(cfg, _config_path(args)), args.action)


def _config_path(args: argparse.Namespace) -> Path | None:
    """The config file in use (the components must read the same one), if there is one."""
    path = config_path(args.config)
    return path if path.exists() else None


COMMANDS = {"demo-data": cmd_demo_data, "run": cmd_run, "lookup": cmd_lookup,
            "status": cmd_status, "demo": cmd_demo, "airflow": cmd_airflow,
            "serve": cmd_serve, "api-key": cmd_api_key, "usage": cmd_usage,
            "snapshots": cmd_snapshots, "rollback": cmd_rollback,
            "store": cmd_store, "retrain": cmd_retrain, "promote": cmd_promote,
            "champions": cmd_champions, "check": cmd_check, "init": cmd_init}


def run_demo(cfg: Config, users: int, days: int, run_date: date) -> int:
    """Generate data, run training then predict for `run_date`, print timings and lookups."""
    from precast import pipeline
    from precast.cli import console
    from precast.serving.lookup import LookupClient
    from precast.use_case import generator

    total = time.perf_counter()
    print(f"precast demo of use case {cfg.name}: {users:,} entities x {days} days, "
          f"run date {run_date}, home {cfg.home.resolve()}", flush=True)
    started = time.perf_counter()
    data = generator(cfg)(cfg.lake_root, users=users, days=days, seed=cfg.demo.seed,
                              start_date=cfg.demo.start_date,
                              corrupt_fraction=cfg.demo.corrupt_fraction,
                              drift_day=cfg.demo.drift_day)
    console.print_step("demo-data", {"lines": sum(data.lines_per_day.values()), "days": days},
                       time.perf_counter() - started)
    print("training:", flush=True)
    pipeline.run_chain(cfg, "training", run_date, on_step=console.print_step)
    print("predict:", flush=True)
    pipeline.run_chain(cfg, "predict", run_date, on_step=console.print_step)
    sample = _sample_ids(cfg, run_date)
    print("sample lookups:")
    with LookupClient(cfg.predictions_url) as client:
        console.print_lookups(client.get([*sample, "no-such-user"]))
    print(f"demo finished in {time.perf_counter() - total:.1f}s")
    return 0


def _sample_ids(cfg: Config, run_date: date, n: int = 3) -> list[str]:
    import pyarrow.dataset as ds


    table = ds.dataset(cfg.lake.predictions(run_date), format="parquet").head(n)
    return [str(v) for v in table.column("entity_id").to_pylist()]


def airflow_action(airflow: LocalAirflow, action: str) -> int:
    """`precast airflow up|down|status`: do it and say what runs, where, and how to sign in."""
    if action == "down":
        stopped = airflow.down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    if action == "up":
        from precast.use_case import configured

        found = configured(airflow.environment())
        print(f"use cases ({len(found)}): " + ("; ".join(
            f"{cfg.name} ({path}): {cfg.name}__*" for path, cfg in found) or
            "none: set PRECAST_USE_CASES=dir1:dir2 or --use-case DIR"), flush=True)
        print(f"starting Airflow ({airflow.parallelism()} task slots, metadata "
              f"{airflow.metadata_url.split('://')[0]}) under {airflow.home} ...", flush=True)
        airflow.up()
    status = airflow.status()
    health = airflow.health()
    for s in status:
        state = f"running  pid {s.pid:<7} {s.rss_mb:7.0f} MB" if s.running else "stopped"
        print(f"  {s.name:<14} {state}  log {s.log_path}")
    if health:
        print("  health: " + ", ".join(f"{k}={v}" for k, v in health.items()))
    running = all(s.running for s in status)
    if running:
        print(f"Airflow UI and REST API: {airflow.url}")
        print(f"precast view (champions, snapshots, rollback): {airflow.url}/plugin/precast")
        print("sign-in: none needed (simple auth manager, every user is admin; "
              "airflow.all_admins)" if airflow.settings.all_admins else
              f"sign-in: users and passwords in {airflow.home}/"
              "simple_auth_manager_passwords.json.generated")
        print("stop with: precast airflow down")
    return 0 if running else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `precast` console script."""
    prepare_environment()
    args = _parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING)
    logging.getLogger("precast").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"precast: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        return COMMANDS[args.command](cfg, args)
    except ConfigError as exc:  # found while the command ran (a file the config names)
        print(f"precast: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except KeyboardInterrupt:
        print("precast: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the CLI turns every failure into one line
        log.debug("failure", exc_info=True)
        reason = redact_text(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        print(f"precast: {args.command} failed: {type(exc).__name__}: {reason}", file=sys.stderr)
        return exit_code(exc)

