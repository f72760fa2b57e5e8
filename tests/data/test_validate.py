"""The events, features and predictions suites on tiny good and bad data (real Great Expectations).

One PRECAST_HOME (and so one GX context) is shared by the module to keep it fast.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from precast import resources
from precast.config import Config, load_config
from precast.data.datasets import KINDS
from precast.lake import Lake
from precast.steps import validate
from precast.validation import (
    NO_DOCS,
    SuiteError,
    ValidationFailed,
    docs_index,
    failure_message,
    gx_root,
    suite_specs,
    to_expectation,
    validate_frame,
)
from precast.validation.context import _home
from tests.helpers import CHURN

RUN_DATE = date(2026, 3, 1)
FEATURE_COUNTS = ("sessions_7d", "sessions_30d", "page_views_7d", "plays_7d", "plays_30d",
                  "purchases_30d", "support_tickets_30d", "plan_changes_30d")
EVENTS_SCHEMA = ("event_id string, user_id string, ts timestamp, event_type string, plan string, "
                 "device string, country string, amount double")


@pytest.fixture(scope="module")
def vcfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """One home for the module: the GX context and its Data Docs are built once."""
    home = tmp_path_factory.mktemp("validate") / "home"
    return load_config(CHURN, environ={"PRECAST_HOME": str(home)})


def features_frame(n: int = 60, labelled: bool = True, snapshot: date = RUN_DATE) -> pd.DataFrame:
    """A valid features dataset: n users, one snapshot, 1 in 10 churned."""
    df = pd.DataFrame({
        "user_id": [f"u{i:03d}" for i in range(n)],
        "snapshot_date": [snapshot] * n,
        **{c: [i % 4 + 1 for i in range(n)] for c in FEATURE_COUNTS},
        "spend_30d": [float(i % 3) * 9.99 for i in range(n)],
        "active_days_7d": [i % 7 for i in range(n)],
        "active_days_30d": [i % 7 + 1 for i in range(n)],
        "days_since_last_event": [i % 5 for i in range(n)],
        "tenure_days": [i % 5 + 20 for i in range(n)],
        "plan": [("free", "basic", "premium")[i % 3] for i in range(n)],
        "device": [("ios", "android", "web", "tv")[i % 4] for i in range(n)],
        "country": [("US", "GB", "DE")[i % 3] for i in range(n)],
    })
    if labelled:
        df["label"] = pd.Series([int(i % 10 == 0) for i in range(n)], dtype="int32")
    return df


def predictions_frame(n: int = 50) -> pd.DataFrame:
    """Valid predictions of one snapshot by one model version."""
    return pd.DataFrame({
        "entity_id": [f"u{i:03d}" for i in range(n)],
        "score": [(i % 10) / 20 for i in range(n)],
        "snapshot_date": [RUN_DATE] * n,
        "model_name": ["precast_churn"] * n,
        "model_version": ["3"] * n,
        "data_version": ["abc123"] * n,
        "scored_at": pd.Series([datetime(2026, 3, 1, 6, tzinfo=UTC)] * n,
                               dtype="datetime64[us, UTC]"),
    })


def events_rows(event_type: str = "play") -> list[tuple]:
    ts = datetime(2026, 3, 1, 12, 0)
    return [
        ("e1", "u1", ts, "session_start", "free", "ios", "US", None),
        ("e2", "u1", ts, "purchase", "free", "ios", "US", 4.99),
        ("e3", "u2", ts, event_type, "basic", "web", "GB", None),
    ]


def page_text(path: str) -> str:
    """The visible text of a Data Docs page (tags stripped)."""
    html = Path(path).read_text(encoding="utf-8")
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# ------------------------------------------------------------------ suite files


def test_every_shipped_suite_builds_and_explains_each_expectation(vcfg: Config) -> None:
    for name in validate.DATASETS:
        docs = [resources.suite(name), resources.use_case_suite(vcfg, name)]
        assert all(doc and doc["name"] == name for doc in docs)
        entries = [e for doc in docs if doc for e in doc["expectations"]]
        assert all(e["notes"].strip() for e in entries)
        specs = suite_specs(vcfg, name)
        assert len(specs) == len(entries)  # every `when` holds for the churn example
        assert all(to_expectation(s, name).notes == s.notes for s in specs)


def test_a_use_cases_own_suite_comes_from_its_folder_after_precasts(tmp_path: Path) -> None:
    folder = tmp_path / "uc"
    (folder / "checks").mkdir(parents=True)
    (folder / "precast.yaml").write_text("name: uc\nvalidation: {suites: checks}\n")
    (folder / "checks" / "predictions.json").write_text(json.dumps({"name": "predictions",
        "expectations": [{"type": "expect_column_max_to_be_between", "notes": "spend cap",
                          "kwargs": {"column": "score", "max_value": 1e6}}]}))
    cfg = load_config(folder / "precast.yaml", environ={})
    specs = suite_specs(cfg, "predictions")
    assert [s.type for s in specs][-1] == "expect_column_max_to_be_between"
    assert len(specs) == len(resources.suite("predictions")["expectations"]) + 1
    assert resources.use_case_suite(cfg, "events") is None


def test_when_drops_what_the_config_does_not_have(vcfg: Config) -> None:
    no_kind = vcfg.with_overrides({"events.kind": None,  # and no amount required per kind
                                   "events.attributes.amount.required": False})
    regression = Config.model_validate({"model": {"task": "regression"}})

    def columns(cfg: Config, name: str) -> list[tuple[str, Any]]:
        return [(s.type, s.kwargs.get("column")) for s in suite_specs(cfg, name)]

    assert ("expect_column_values_to_not_be_null", "event_type") in columns(vcfg, "events")
    assert all(column != "event_type" for _, column in columns(no_kind, "events"))
    bounded = ("expect_column_values_to_be_between", "score")
    assert bounded in columns(vcfg, "predictions")
    assert bounded not in columns(regression, "predictions")


def test_allowed_values_come_from_config(vcfg: Config) -> None:
    cfg = vcfg.with_overrides({"events.attributes.plan.values": ["free", "gold"]})
    plan_sets = [s.kwargs["value_set"] for s in suite_specs(cfg, "events")
                 if s.type == "expect_column_values_to_be_in_set" and s.kwargs["column"] == "plan"]
    assert plan_sets == [["free", "gold"]]


def test_label_expectations_apply_to_train_and_test_only(vcfg: Config) -> None:
    def checks(kind: str) -> set[tuple[str, str]]:
        return {(s.type, s.kwargs.get("column", "")) for s in suite_specs(vcfg, "features", kind)}

    assert checks("train") == checks("test")
    assert checks("train") - checks("inference") == {
        ("expect_column_to_exist", "label"),
        ("expect_column_values_to_not_be_null", "label"),
        ("expect_column_values_to_be_in_set", "label"),
        ("expect_column_mean_to_be_between", "label"),
    }
    assert checks("inference") < checks("train")


def test_unknown_expectation_type_fails_clearly(vcfg: Config, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    bogus = {"name": "bogus", "expectations": [
        {"type": "expect_column_values_to_be_awesome", "kwargs": {"column": "x"},
         "notes": "no such expectation"}]}
    monkeypatch.setattr(resources, "suite", lambda name: bogus)
    with pytest.raises(SuiteError, match="unknown expectation type "
                                           "'expect_column_values_to_be_awesome'"):
        validate_frame(vcfg, "bogus", pd.DataFrame({"x": [1]}), "bogus-run")


@pytest.mark.parametrize(("entry", "message"), [
    ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
     "needs 'notes'"),
    ({"type": "expect_column_values_to_be_in_set", "notes": "n",
      "kwargs": {"column": "x", "value_set": {"$config": "events.colours"}}},
     "unknown config path 'events.colours'"),
    ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "notes": "n",
      "severity": "low"}, "unknown keys \\['severity'\\]"),
    ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "notes": "n",
      "when": {"model.tsk": "binary"}}, "when: unknown config path 'model.tsk'"),
    ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "notes": "n",
      "when": ["model.task"]}, "'when' must be a config path or an object"),
])
def test_malformed_suite_entries_are_rejected(vcfg: Config, monkeypatch: pytest.MonkeyPatch,
                                              entry: dict, message: str) -> None:
    monkeypatch.setattr(resources, "suite", lambda name: {"name": "bad", "expectations": [entry]})
    with pytest.raises(SuiteError, match=message):
        suite_specs(vcfg, "bad")


def test_bad_kwargs_fail_clearly(vcfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "x"}, "notes": "n"}
    monkeypatch.setattr(resources, "suite", lambda name: {"name": "bad", "expectations": [entry]})
    with pytest.raises(SuiteError, match="bad kwargs for expect_column_values_to_be_between"):
        validate_frame(vcfg, "bad", pd.DataFrame({"x": [1]}), "bad-run")


# ------------------------------------------------------------------ features


def test_good_features_pass(vcfg: Config) -> None:
    result = validate_frame(vcfg, "features", features_frame(), "features-ok", kind="train")
    assert result.success, result.failed
    assert result.suite == "features.train"
    assert result.failed == ()
    assert result.statistics["evaluated_expectations"] == len(suite_specs(vcfg, "features"))
    assert Path(result.docs_path).is_file()
    assert Path(result.docs_path).is_relative_to(vcfg.home.resolve())


def test_features_violations_fail_and_are_named(vcfg: Config) -> None:
    bad = features_frame()
    bad.loc[3, "sessions_7d"] = -1
    bad.loc[4, "user_id"] = None
    bad.loc[5, "plan"] = "enterprise"
    bad.loc[6, "label"] = 2

    result = validate_frame(vcfg, "features", bad, "features-bad", kind="train")

    assert not result.success
    assert set(result.failed) == {
        "expect_column_values_to_be_between(column=sessions_7d): 1 unexpected, e.g. [-1]",
        "expect_column_values_to_not_be_null(column=user_id): 1 unexpected, e.g. [None]",
        "expect_column_values_to_be_in_set(column=plan): 1 unexpected, e.g. ['enterprise']",
        "expect_column_values_to_be_in_set(column=label): 1 unexpected, e.g. [2]",
        # sessions_30d stays 4, so the pair check still holds; label mean 7/60 is in range
    }
    assert result.statistics["unsuccessful_expectations"] == 4
    message = failure_message(result, "lake/datasets/train")
    assert message.startswith("suite features.train failed on lake/datasets/train: 4 of ")
    assert "expect_column_values_to_be_in_set(column=plan)" in message
    assert message.endswith(f"Data Docs: {result.docs_path}")
    page = Path(result.docs_path)
    assert page.is_file() and page.is_relative_to(vcfg.home.resolve())
    text = page_text(result.docs_path)
    assert "features-bad" in text and "Failed" in text
    assert "expect_column_values_to_be_in_set(column=plan" in text
    assert "enterprise" in text
    assert docs_index(vcfg).is_file()


def test_without_data_docs_the_same_failures_are_named_and_no_site_is_built(
        tmp_path: Path) -> None:
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(tmp_path / "home")}).with_overrides(
        {"validation.data_docs": False})
    bad = features_frame()
    bad.loc[5, "plan"] = "enterprise"

    result = validate_frame(cfg, "features", bad, "features-bad", kind="train")

    assert not result.success
    assert result.failed == (
        "expect_column_values_to_be_in_set(column=plan): 1 unexpected, e.g. ['enterprise']",)
    assert result.docs_path == NO_DOCS
    assert failure_message(result, "train").endswith(
        "Data Docs: not built (validation.data_docs is false)")
    assert not list((gx_root(cfg) / "uncommitted").rglob("*.html"))  # no page, no index
    assert validate_frame(cfg, "features", features_frame(), "features-ok", kind="train").success


def test_run_features_validates_each_dataset_from_the_lake(vcfg: Config) -> None:
    lake = Lake(vcfg.lake_root)
    for kind in KINDS:
        path = Path(lake.dataset(kind, RUN_DATE))
        path.mkdir(parents=True, exist_ok=True)
        features_frame(labelled=kind != "inference").to_parquet(path / "part-0.parquet")

    result = validate.run(vcfg, "features", RUN_DATE)

    assert result.success and result.failed == ()
    assert result.suite == "features"
    n_all = len(suite_specs(vcfg, "features"))
    n_inference = len(suite_specs(vcfg, "features", "inference"))
    assert result.statistics["evaluated_expectations"] == 2 * n_all + n_inference
    assert result.docs_path == str(docs_index(vcfg))


def test_unlabelled_data_passes_inference_but_fails_train(vcfg: Config) -> None:
    unlabelled = features_frame(labelled=False)
    inference = validate_frame(vcfg, "features", unlabelled, "inf", kind="inference")
    assert inference.success, inference.failed
    train = validate_frame(vcfg, "features", unlabelled, "train-no-label", kind="train")
    missing = 'error: Error: The column "label" in BatchData does not exist.'
    assert set(train.failed) == {
        "expect_column_to_exist(column=label): failed",
        f"expect_column_values_to_not_be_null(column=label): {missing}",
        f"expect_column_values_to_be_in_set(column=label): {missing}",
        f"expect_column_mean_to_be_between(column=label): {missing}",
    }


# ------------------------------------------------------------------ predictions


def test_good_predictions_pass(vcfg: Config) -> None:
    result = validate_frame(vcfg, "predictions", predictions_frame(), "predictions-ok")
    assert result.success, result.failed


def test_scores_above_one_fail_the_run_with_the_dataset_and_page(vcfg: Config) -> None:
    bad = predictions_frame()
    bad.loc[[1, 2, 3], "score"] = [1.4, 1.5, 2.0]
    path = Path(Lake(vcfg.lake_root).predictions(RUN_DATE))
    path.mkdir(parents=True, exist_ok=True)
    bad.to_parquet(path / "part-0.parquet")

    with pytest.raises(ValidationFailed) as info:
        validate.run(vcfg, "predictions", RUN_DATE)

    message = str(info.value)
    assert message.startswith(f"suite predictions failed on {path}: 1 of 15 expectations failed")
    assert ("  - expect_column_values_to_be_between(column=score): 3 unexpected, "
            "e.g. [1.4, 1.5, 2.0]") in message
    docs = message.rsplit("Data Docs: ", 1)[1]
    assert Path(docs).is_file() and Path(docs).is_relative_to(vcfg.home.resolve())
    assert "expect_column_values_to_be_between(column=score" in page_text(docs)


def test_score_distribution_is_checked(vcfg: Config) -> None:
    flat = predictions_frame()
    flat["score"] = 0.95
    result = validate_frame(vcfg, "predictions", flat, "predictions-flat")
    assert result.failed == ("expect_column_mean_to_be_between(column=score): observed 0.95",)


def test_regression_scores_have_no_probability_bounds(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "precast.yaml", environ={  # defaults, not the churn file
        "PRECAST_HOME": str(tmp_path / "home"), "PRECAST_MODEL__TASK": "regression",
        "PRECAST_VALIDATION__DATA_DOCS": "false"})
    bounds = {("expect_column_values_to_be_between", "score"),
              ("expect_column_mean_to_be_between", "score")}
    specs = {(s.type, s.kwargs.get("column")) for s in suite_specs(cfg, "predictions")}
    assert not specs & bounds
    assert bounds <= {(s.type, s.kwargs.get("column")) for s in
                      suite_specs(load_config(CHURN, environ={}), "predictions")}
    spend = predictions_frame()
    spend["score"] = [40.0 + 7.5 * (i % 9) - 20 for i in range(len(spend))]  # some below 0
    result = validate_frame(cfg, "predictions", spend, "predictions-spend")
    assert result.success, result.failed
    spend.loc[3, "score"] = None
    assert not validate_frame(cfg, "predictions", spend, "predictions-spend-null").success


def test_missing_dataset_is_a_clear_error(vcfg: Config) -> None:
    with pytest.raises(FileNotFoundError, match="no predictions data at .*2026-01-01"):
        validate.run(vcfg, "predictions", date(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown dataset 'labels'"):
        validate.run(vcfg, "labels", RUN_DATE)


# ------------------------------------------------------------------ events (Spark)


def test_events_day_from_the_lake_passes_on_our_spark_session(vcfg: Config, spark) -> None:
    path = Lake(vcfg.lake_root).events(RUN_DATE)
    spark.createDataFrame(events_rows(), EVENTS_SCHEMA).write.mode("overwrite").parquet(path)

    result = validate.run(vcfg, "events", RUN_DATE, spark=spark)

    assert result.success, result.failed
    assert result.suite == "events"
    assert result.statistics["evaluated_expectations"] == len(suite_specs(vcfg, "events"))
    source = _home(str(gx_root(vcfg))).context.data_sources.get("spark")
    assert source.get_execution_engine().spark is spark  # GX started no session of its own


def test_events_with_unknown_type_fail(vcfg: Config, spark) -> None:
    df = spark.createDataFrame(events_rows(event_type="teleport"), EVENTS_SCHEMA)
    result = validate_frame(vcfg, "events", df, "events-bad")
    assert not result.success
    assert result.failed == (
        "expect_column_values_to_be_in_set(column=event_type): 1 unexpected, e.g. ['teleport']",
    )
    assert "expect_column_values_to_be_in_set(column=event_type" in page_text(result.docs_path)
    assert not df.is_cached  # the persist for validation was released
