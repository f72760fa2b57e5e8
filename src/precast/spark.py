"""SparkSession factory: master and conf come from config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from precast.config import Config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(cfg: Config) -> SparkSession:
    """The session for `cfg.engines.spark` (reuses an active one, as tests do)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(cfg.engines.spark.master).appName(
        cfg.engines.spark.app_name
    )
    for key, value in cfg.engines.spark.conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
