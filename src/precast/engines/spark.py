"""SparkSession factory: master and conf come from config.

A local session started for a small input (a daily run's day, a test world, the 1x world's
22 MB of clean events) starts its JVM for start-up rather than throughput (`QUICK_START_JVM`):
with C1-compiled code and the serial collector, a 12-line day's extract took 11.9 s of JVM CPU
instead of 23.8 s, and 5 snapshots of features over 22 MB came out faster too. Larger inputs
keep the JIT's full tiers and take the throughput collector (`THROUGHPUT_JVM`): features over
the 10x world's 220 MB took 112 s so and 176 s with the quick-start JVM, and the 10x daily
chain 53 s (63 s with the full tiers and the default G1 collector). A conf that sets
`spark.driver.extraJavaOptions` itself is left as it is. A chain of steps in one process
shares one session, so `precast.pipeline` starts it sized by the clean events its feature
steps read, not by the first step's input.

A local session's driver JVM also maps the class-data archive of precast.engines.jvm_archive
(through `spark.driver.defaultJavaOptions`, which Spark puts before any extraJavaOptions),
unless the conf sets that key itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from precast.config import Config
from precast.engines import jvm_archive

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

QUICK_START_BYTES = 64 * 2**20
QUICK_START_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
THROUGHPUT_JVM = "-XX:+UseParallelGC"
JVM_OPTIONS = "spark.driver.extraJavaOptions"


def session_conf(cfg: Config, input_bytes: int | None = None) -> dict[str, str]:
    """The conf a new session starts with: the config's, plus, for a local master and a known
    input, the quick-start JVM options (under QUICK_START_BYTES) or the throughput ones."""
    conf = dict(cfg.engines.spark.conf)
    if (input_bytes is not None and cfg.engines.spark.master.startswith("local")
            and JVM_OPTIONS not in conf):
        conf[JVM_OPTIONS] = QUICK_START_JVM if input_bytes < QUICK_START_BYTES else THROUGHPUT_JVM
    return conf


def spark_session(cfg: Config, input_bytes: int | None = None) -> SparkSession:
    """The session for `cfg.engines.spark` (reuses an active one: steps of one process share
    it, and its JVM options are those of the first); `input_bytes` is the size of what the
    step reads, when known."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(cfg.engines.spark.master).appName(
        cfg.engines.spark.app_name
    )
    conf = session_conf(cfg, input_bytes)
    if (SparkSession.getActiveSession() is None and cfg.engines.spark.master.startswith("local")
            and jvm_archive.OPTIONS_KEY not in conf):
        options = jvm_archive.driver_options()
        if options:
            conf[jvm_archive.OPTIONS_KEY] = options
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
