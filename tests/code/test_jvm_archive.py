"""The local driver's class-data archive (precast.engines.jvm_archive): where it lives, who
builds it, and that a JVM given a damaged one still runs Spark."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from precast.engines import jvm_archive


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(jvm_archive.CACHE_ENV, str(tmp_path))
    return tmp_path


def test_the_archive_lives_in_the_configured_cache_named_by_java_and_spark(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = jvm_archive.archive_path()
    assert archive is not None
    assert archive.parent == cache
    assert archive.name.startswith("spark-driver-") and archive.suffix == ".jsa"
    monkeypatch.setenv("JAVA_HOME", str(cache / "no-java-here"))
    assert jvm_archive.archive_path() is None  # no Java, no archive (and no error)
    monkeypatch.setenv(jvm_archive.CACHE_ENV, "off")
    assert jvm_archive.archive_path() is None
    assert jvm_archive.driver_options() is None


def test_an_existing_archive_is_mapped_quietly(cache: Path) -> None:
    archive = jvm_archive.archive_path()
    assert archive is not None
    archive.write_bytes(b"built earlier")
    options = jvm_archive.driver_options()
    assert options == f"-XX:SharedArchiveFile={archive} {jvm_archive.QUIET}"


def test_one_process_builds_a_missing_archive_and_a_dead_builders_lock_is_taken_over(
        cache: Path) -> None:
    archive = jvm_archive.archive_path()
    assert archive is not None
    lock = archive.with_suffix(".lock")
    lock.touch()  # another process is building it
    assert jvm_archive.driver_options() is None
    assert not archive.exists() and lock.exists()
    assert not jvm_archive._claim(archive)
    stale = time.time() - jvm_archive.STALE_LOCK_S - 60
    os.utime(lock, (stale, stale))  # its builder died long ago
    assert jvm_archive._claim(archive)
    assert lock.stat().st_mtime > stale
    dead, live = (archive.with_name(f"{archive.stem}.{pid}.part") for pid in (11, 12))
    dead.write_bytes(b"half an archive")
    live.write_bytes(b"being written")
    os.utime(dead, (stale, stale))
    jvm_archive.drop_stale_parts(archive)  # what a builder does first
    assert not dead.exists() and live.exists()


def test_a_driver_given_a_damaged_archive_still_runs_spark(cache: Path) -> None:
    archive = jvm_archive.archive_path()
    assert archive is not None
    archive.write_bytes(os.urandom(100_000))
    script = ("from precast.config import load_config; "
              "from precast.engines.spark import spark_session; "
              "from pathlib import Path; "
              "s = spark_session(load_config(Path('precast.yaml'), environ={})); "
              "print('rows', s.range(3).count(), "
              "s.sparkContext.getConf().get('spark.driver.defaultJavaOptions'))")
    done = subprocess.run([sys.executable, "-c", script], cwd=cache, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"rows 3 -XX:SharedArchiveFile={archive}" in done.stdout
