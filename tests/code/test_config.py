"""Config loads with defaults, honours PRECAST_* overrides and names bad fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from precast.config import ConfigError, load_config, xgboost_params
from tests.helpers import CHURN

REPO = Path(__file__).resolve().parents[2]


def test_defaults_run_on_one_machine(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "precast.yaml", environ={})
    assert cfg.engines.spark.master == "local[*]"
    assert cfg.engines.beam.runner == "DirectRunner"
    assert cfg.predictions_url.startswith("sqlite:///")
    assert cfg.tracking_uri.endswith("/.precast/mlflow.db")


def test_shipped_example_loads() -> None:
    cfg = load_config(CHURN, environ={})
    assert cfg.model.name == "precast_churn"
    assert cfg.features.label_horizon_days == 14


def test_env_overrides_nested_fields_and_home(tmp_path: Path) -> None:
    env = {"PRECAST_HOME": str(tmp_path / "h"), "PRECAST_GATE__TOLERANCE": "0.05",
           "PRECAST_ENGINES__SPARK__MASTER": "spark://127.0.0.1:7077"}
    cfg = load_config(CHURN, environ=env)
    assert cfg.gate.tolerance == 0.05
    assert cfg.engines.spark.master == "spark://127.0.0.1:7077"
    assert cfg.lake_root == str((tmp_path / "h" / "lake" / "churn").resolve())


@pytest.mark.parametrize(
    ("yaml_text", "where"),
    [
        ("gate:\n  tolerance: -1\n", "gate.tolerance"),
        ("gate:\n  floors: {accuracy: 0.5}\n", "gate.floors"),
        ("train:\n  device: tpu\n", "train.device"),
        ("features:\n  short_window_days: 30\n  long_window_days: 7\n", "features"),
        ("stores:\n  typo_field: 1\n", "stores.typo_field"),
        ("monitor:\n  feature_limits: {plan: {psi: 0.3}}\n", "monitor.feature_limits"),
        ("train:\n  scheduled_runs: weekly\n", "train.scheduled_runs"),
        ("monitor:\n  webhook_url: hooks.example.com/x\n", "monitor.webhook_url"),
    ],
)
def test_bad_values_fail_naming_the_field(tmp_path: Path, yaml_text: str, where: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=rf"config error at {where}"):
        load_config(path, environ={})


def test_config_file_and_test_flags_are_not_fields(tmp_path: Path) -> None:
    env = {"PRECAST_CONFIG": "elsewhere.yaml", "PRECAST_TEST_REQUIRE_POSTGRES": "1"}
    assert load_config(tmp_path / "precast.yaml", environ=env) == load_config(
        tmp_path / "precast.yaml", environ={})


def test_unknown_env_field_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config error at require_postgres"):
        load_config(tmp_path / "precast.yaml", environ={"PRECAST_REQUIRE_POSTGRES": "1"})


def test_bad_env_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config error at extract.max_quarantine_rate"):
        load_config(tmp_path / "x" / "precast.yaml",
                    environ={"PRECAST_EXTRACT__MAX_QUARANTINE_RATE": "2"})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})


@pytest.mark.parametrize(
    ("yaml_text", "where", "reason"),
    [
        ("model: {task: regression}\ntrain: {params: {objective: 'binary:logistic'}}\n",
         "train.params.objective", "binary:logistic does not fit model.task regression"),
        ("train: {params: {objective: 'reg:squarederror'}}\n",
         "train.params.objective", "reg:squarederror does not fit model.task binary"),
        ("model: {task: regression}\ngate: {metric: roc_auc}\n",
         "gate.metric", "roc_auc is not a regression metric .*rmse, mae, r2"),
        ("gate: {metric: rmse}\n", "gate.metric", "rmse is not a binary metric"),
        ("model: {task: regression}\ngate: {floors: {roc_auc: 0.6}}\n",
         "gate.floors", r"\['roc_auc'\] are not regression metrics"),
        ("serve: {fallback_score: 1.5}\n", "serve.fallback_score", "1.5 is not a probability"),
    ],
)
def test_what_does_not_fit_the_task_fails_naming_the_field(
        tmp_path: Path, yaml_text: str, where: str, reason: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=rf"config error at {where}: {reason}"):
        load_config(path, environ={})


def test_regression_defaults_fit_the_task_and_the_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "spend.yaml"
    path.write_text("model: {task: regression, target_description: spend over 30 days}\n"
                    "serve: {fallback_score: 42.5}\n")
    cfg = load_config(path, environ={})
    assert (cfg.gate.metric, cfg.gate.floors, cfg.gate.max_mean_score_gap) == ("rmse", {}, None)
    assert cfg.monitor.max_bias is None and cfg.monitor.max_rmse is None
    assert cfg.serve.fallback_score == 42.5  # label units: no [0, 1] bound
    assert xgboost_params(cfg.model.task, cfg.train.params)["objective"] == "reg:squarederror"
    assert xgboost_params(cfg.model.task, cfg.train.params)["eval_metric"] == "rmse"
    path.write_text("model: {task: regression}\ngate: {metric: mae, floors: {rmse: 12}, "
                    "max_mean_score_gap: 2}\nmonitor: {max_bias: 1.5, max_rmse: 20}\n"
                    "train: {params: {objective: 'reg:pseudohubererror', eval_metric: mae}}\n")
    cfg = load_config(path, environ={})
    assert (cfg.gate.metric, cfg.gate.floors, cfg.gate.max_mean_score_gap) == (
        "mae", {"rmse": 12}, 2)
    assert (cfg.monitor.max_bias, cfg.monitor.max_rmse) == (1.5, 20)
    assert xgboost_params(cfg.model.task, cfg.train.params)["objective"] == "reg:pseudohubererror"
    env = {"PRECAST_MODEL__TASK": "regression"}  # an override of the task alone fits too
    assert load_config(tmp_path / "precast.yaml", environ=env).gate.metric == "rmse"


def test_binary_defaults_are_unchanged(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "precast.yaml", environ={})
    assert (cfg.model.task, cfg.gate.metric, cfg.gate.floors) == ("binary", "roc_auc", {})
    assert (cfg.gate.max_mean_score_gap, cfg.monitor.max_bias) == (0.05, 0.05)
    params = xgboost_params(cfg.model.task, cfg.train.params)
    assert (params["objective"], params["eval_metric"]) == ("binary:logistic", "logloss")


SHA = "a" * 64


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("serve: {api_keys: [{name: app, sha256: not-a-hash}]}\n",
     "config error at serve.api_keys.0.sha256: String should match pattern"),
    (f"serve: {{api_keys: [{{name: app, sha256: {SHA}}}, {{name: app, sha256: {SHA}}}]}}\n",
     "config error at serve: Value error, api_keys names must be unique; given twice: app"),
    ("serve: {api_keys: [{name: app, key: secret}]}\n", "config error at serve.api_keys.0"),
    ("serve: {rate_limit_per_s: 0}\n", "config error at serve.rate_limit_per_s"),
])
def test_api_keys_hold_hashes_with_unique_names(
        tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(message), raised.value


def test_raw_api_keys_in_the_environment_are_no_config_field(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "precast.yaml", environ={"PRECAST_API_KEYS": "app=pk_1"})
    assert cfg.serve.api_keys == []


def test_a_small_local_input_starts_the_jvm_for_start_up_and_nothing_else_does(
        tmp_path: Path) -> None:
    from precast.engines.spark import (
        JVM_OPTIONS,
        QUICK_START_BYTES,
        QUICK_START_JVM,
        THROUGHPUT_JVM,
        session_conf,
    )

    local = load_config(tmp_path / "precast.yaml", environ={})
    assert session_conf(local, 12_000)[JVM_OPTIONS] == QUICK_START_JVM
    assert session_conf(local, 12_000)["spark.sql.codegen.hugeMethodLimit"] == "8000"
    assert session_conf(local, QUICK_START_BYTES)[JVM_OPTIONS] == THROUGHPUT_JVM
    assert JVM_OPTIONS not in session_conf(local, None)  # unknown: Spark's own defaults
    cluster = load_config(tmp_path / "precast.yaml",
                          environ={"PRECAST_ENGINES__SPARK__MASTER": "spark://127.0.0.1:7077"})
    assert JVM_OPTIONS not in session_conf(cluster, 12_000)
    (tmp_path / "own.yaml").write_text(
        "engines:\n  spark:\n    conf: {spark.driver.extraJavaOptions: -Xss4m}\n")
    own = load_config(tmp_path / "own.yaml", environ={})
    assert session_conf(own, 12_000)[JVM_OPTIONS] == "-Xss4m"
    # one key of a config's own conf keeps every other default (the session time zone...)
    assert own.engines.spark.conf["spark.sql.session.timeZone"] == "UTC"


CHAIN_SESSION = """
import json, sys
from datetime import date
from pathlib import Path
from pyspark.sql import SparkSession
from precast import pipeline
from precast.engines import spark
from precast.config import load_config
spark.QUICK_START_BYTES = int(sys.argv[2])  # below it: the quick-start JVM
cfg = load_config(Path(sys.argv[1]), environ={})
pipeline._start_spark_for(cfg, pipeline.DAILY)
session = SparkSession.getActiveSession()
print(json.dumps(None if session is None else
                 session.sparkContext.getConf().get(spark.JVM_OPTIONS)))
"""


def test_a_chain_sizes_its_one_session_by_the_events_its_feature_steps_read(
        tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    from precast.engines.spark import QUICK_START_JVM, THROUGHPUT_JVM

    config = tmp_path / "precast.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\n")

    def chain_session(threshold: int) -> object:
        done = subprocess.run([sys.executable, "-c", CHAIN_SESSION, str(config), str(threshold)],
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert chain_session(1) is None  # an empty lake: the first step sizes the session
    events = Path(load_config(config, environ={}).lake.events()) / "dt=2026-01-01"
    events.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": ["u1"] * 1000}), events / "part-0.parquet")
    size = (events / "part-0.parquet").stat().st_size
    full, quick = chain_session(size), chain_session(size + 1)
    assert isinstance(full, str) and THROUGHPUT_JVM in full and QUICK_START_JVM not in full
    assert isinstance(quick, str) and QUICK_START_JVM in quick
