"""A class-data archive for the local Spark driver's JVM: start-up without loading Spark's classes
one by one from 250 jars.

A JVM that starts a SparkSession loads and verifies some 15,000 classes, each looked up across
the jars of Spark's class path: on 2 cores that is about half of a 12-line day's extract
(session 5.7 s -> 2.7 s, the first Spark jobs 10.3 s -> 6.9 s, measured in docs/scaling.md).
Java's dynamic class-data sharing (AppCDS, `-XX:ArchiveClassesAtExit` /
`-XX:SharedArchiveFile`) keeps those classes parsed and verified in one memory-mapped file
that every later JVM of the same Java and Spark maps instead.

The archive lives in the user's cache (`$PRECAST_JVM_CACHE`, else `$XDG_CACHE_HOME/precast/jvm`,
else `~/.cache/precast/jvm`; `PRECAST_JVM_CACHE=off` turns it off), named by the Java and
Spark it was made with, so an upgrade makes a new one. The first local session that finds
none starts a child process that builds it (a few small Spark jobs through the paths precast
uses, about 20 s of CPU once per machine) and goes on without it; a lock keeps to one builder at
a time. A JVM that cannot use the archive (another Java, a changed class path, a damaged file)
ignores it and loads its classes as before: the archive only ever costs or saves time.

    python -m precast.engines.jvm_archive     # build it now rather than in the background
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "PRECAST_JVM_CACHE"
OPTIONS_KEY = "spark.driver.defaultJavaOptions"  # Spark prepends it to extraJavaOptions
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # no JVM warnings on a skipped or unusable archive
STALE_LOCK_S = 600  # a builder holding the lock longer than this has died


def archive_path() -> Path | None:
    """Where this Java's and this Spark's archive lives; None when turned off or when no Java
    or Spark is found."""
    where = os.environ.get(CACHE_ENV, "")
    if where.lower() == "off":
        return None
    if where:
        folder = Path(where)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(cache) / "precast" / "jvm"
    key = _runtime_key()
    return None if key is None else folder / f"spark-driver-{key}.jsa"


def _runtime_key() -> str | None:
    """A digest of the Java binary and the Spark jars a local driver starts with."""
    import pyspark

    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=str(Path(java_home) / "bin") if java_home else None)
    spark_home = os.environ.get("SPARK_HOME") or str(Path(pyspark.__file__).parent)
    jars = Path(spark_home) / "jars"
    if java is None or not jars.is_dir():
        return None
    real = os.path.realpath(java)
    parts = [real, str(os.stat(real).st_mtime_ns), str(jars.resolve()), pyspark.__version__,
             *sorted(f"{p.name}:{p.stat().st_size}" for p in jars.iterdir())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def driver_options() -> str | None:
    """JVM options that map the archive when it exists; otherwise start building it in the
    background (unless another process is) and return None."""
    try:
        archive = archive_path()
        if archive is None or " " in str(archive):
            return None
        if archive.is_file():
            return f"-XX:SharedArchiveFile={archive} {QUIET}"
        if _claim(archive):
            _start_builder(archive)
    except OSError as exc:  # an unwritable cache: run without the archive
        log.debug("no JVM class archive: %s", exc)
    return None


def _lock(archive: Path) -> Path:
    return archive.with_suffix(".lock")


def _claim(archive: Path) -> bool:
    """Take the builder's lock (False: another process holds a fresh one)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(archive)
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink(missing_ok=True)
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _start_builder(archive: Path) -> None:
    """Build the archive in a detached child (it releases the lock)."""
    subprocess.Popen(  # noqa: S603 - our own module, no shell
        [sys.executable, "-m", "precast.engines.jvm_archive", "--locked"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def build(archive: Path) -> bool:
    """Run the warm-up in a JVM that writes its loaded classes to a part file at exit, then
    move the file into place (True when it did)."""
    drop_stale_parts(archive)
    part = archive.with_name(f"{archive.stem}.{os.getpid()}.part")
    options = f"-XX:ArchiveClassesAtExit={part} {QUIET}"
    try:
        done = subprocess.run(  # noqa: S603 - our own module, no shell
            [sys.executable, "-c",
             f"from precast.engines.jvm_archive import warm_up; warm_up({options!r})"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
        if done.returncode == 0 and part.is_file() and part.stat().st_size > 0:
            os.replace(part, archive)
            return True
        log.warning("JVM class archive not built (exit %s): %s", done.returncode,
                    done.stderr.decode(errors="replace")[-2000:])
        return False
    finally:
        part.unlink(missing_ok=True)


def drop_stale_parts(archive: Path) -> None:
    """Delete the part files of builders that died (older than STALE_LOCK_S): each is the size
    of an archive."""
    for part in archive.parent.glob(f"{archive.stem}.*.part"):
        if time.time() - part.stat().st_mtime > STALE_LOCK_S:
            part.unlink(missing_ok=True)


def warm_up(options: str) -> None:
    """A local session whose JVM runs `options`, through the kinds of Spark work precast does:
    JSON lines read as text with file metadata, parsed, aggregated, windowed, joined, written
    as partitioned Parquet, read back, queried with named binds. The JVM exits when this
    process does (PySpark closes its stdin), and writes the archive then."""
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    from precast.config import DEFAULT_SPARK_CONF

    builder = SparkSession.builder.master("local[2]").appName("precast-jvm-archive")
    for key, value in {**DEFAULT_SPARK_CONF, OPTIONS_KEY: options}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    with tempfile.TemporaryDirectory(prefix="precast-jvm-archive-") as tmp:
        raw = Path(tmp) / "raw" / "dt=2026-01-01"
        raw.mkdir(parents=True)
        (raw / "events.jsonl").write_text("".join(
            f'{{"event_id": "e{i}", "user_id": "u{i % 3}", "ts": "2026-01-01T00:00:0{i % 10}Z",'
            f' "amount": {i}.5, "kind": "k{i % 2}"}}\n' for i in range(20)) + "not json\n")
        schema = ("event_id STRING, user_id STRING, ts STRING, amount DOUBLE, kind STRING, "
                  "_corrupt STRING")
        lines = spark.read.option("basePath", str(Path(tmp) / "raw")).text(str(raw)).select(
            "dt", "value", F.col("_metadata.file_path").alias("f"),
            F.monotonically_increasing_id().alias("row"))
        parsed = lines.select("dt", "row", F.from_json("value", schema, {
            "mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}).alias("j")).select(
            "dt", "row", "j.*").withColumn("ts", F.to_timestamp("ts")).persist()
        counts = parsed.groupBy("dt").agg(
            F.count("*"), F.sum(F.xxhash64("event_id").cast("decimal(38,0)")))
        counts.collect()
        latest = parsed.withColumn("rn", F.row_number().over(
            Window.partitionBy("user_id").orderBy(F.col("ts").desc()))).where("rn = 1")
        last = latest.select("user_id", F.col("kind").alias("last_kind"))
        clean = parsed.join(F.broadcast(last), "user_id", "left")
        out = str(Path(tmp) / "events")
        (clean.sortWithinPartitions("dt", "ts").write.mode("overwrite")
         .option("partitionOverwriteMode", "dynamic").partitionBy("dt").parquet(out))
        spark.read.parquet(out).createOrReplaceTempView("events")
        spark.sql(
            "SELECT user_id, count_if(amount > :low) AS n, count(DISTINCT ts) AS d, "
            "CAST(sum(CAST(amount AS DECIMAL(20, 6))) AS DOUBLE) AS s, "
            "max(datediff(date_add(:day, 1), dt)) AS since FROM events "
            "WHERE dt <= :day GROUP BY user_id",
            args={"low": 1, "day": "2026-01-01"}).localCheckpoint().collect()
        parsed.unpersist()
    spark.stop()


def main(argv: list[str]) -> int:
    """`python -m precast.engines.jvm_archive [--locked]`: build the archive now (--locked:
    the caller took the builder's lock, which this releases)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    archive = archive_path()
    if archive is None:
        log.info("no JVM class archive: %s is off, or no Java or Spark was found", CACHE_ENV)
        return 0
    locked = "--locked" in argv
    if not locked and not _claim(archive):
        log.info("another process is building %s", archive)
        return 0
    try:
        built = build(archive)
    finally:
        _lock(archive).unlink(missing_ok=True)
    log.info("%s %s", "built" if built else "could not build", archive)
    return 0 if built else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
