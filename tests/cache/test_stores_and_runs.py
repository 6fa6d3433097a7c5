"""The two stores, runs that share them, and a cache that fails under a run (acceptance 3)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from qhybrid.cache import session as cache_session
from qhybrid.cache.entries import RESULT_PREFIX, decode_result, encode_result
from qhybrid.cache.session import OFF, CacheSettings
from qhybrid.cache.stores import LmdbStore, RedisStore, open_store
from qhybrid.cutting.outcomes import OutcomeDistribution
from qhybrid.pipeline.runner import run_local
from qhybrid.spec import RunSpec
from tests.conftest import run_cli

SPEC = RunSpec(scenario="cutting")


def estimate_bits(report: dict) -> str:
    return float(report["estimate"]).hex()


@pytest.fixture(scope="module")
def uncached(tmp_path_factory) -> str:
    cache_session.reset_sessions()
    return estimate_bits(run_local(SPEC, tmp_path_factory.mktemp("nocache") / "run", progress=False))


@pytest.mark.parametrize("kind", ["lmdb", "redis"])
def test_each_store_sets_a_key_only_if_absent(kind, tmp_path, request):
    store = (
        LmdbStore(tmp_path / "lmdb")
        if kind == "lmdb"
        else RedisStore(request.getfixturevalue("redis_server").url)
    )
    key = RESULT_PREFIX.encode() + b"k"
    assert store.put_if_absent(key, b"first") is True
    assert store.put_if_absent(key, b"second") is False  # a later writer never replaces an entry
    assert store.get_many([key, key + b"missing"]) == [b"first", None]
    assert list(store.keys(RESULT_PREFIX.encode())) == [key]
    assert store.stats()["results"] == 1
    assert store.delete([key]) == 1
    store.close()


def test_the_embedded_store_evicts_least_recently_used_entries_when_full(tmp_path):
    store = LmdbStore(tmp_path / "small", max_bytes=1 << 20)  # 1 MiB
    keys = [f"{RESULT_PREFIX}{i:04d}".encode() for i in range(200)]
    for key in keys:  # 200 x 16 KiB is three times the map: older entries must make room
        assert store.put_if_absent(key, bytes(16 << 10)) is True
    kept = [k for k, v in zip(keys, store.get_many(keys), strict=True) if v is not None]
    assert 0 < len(kept) < len(keys)
    assert keys[-1] in kept and keys[0] not in kept  # the newest stay, the oldest went
    assert store.gc(256 << 10) > 0 and store.stats()["bytes"] <= 256 << 10


def test_a_corrupt_entry_reads_as_a_miss_and_is_counted(tmp_path):
    location = str(tmp_path / "lmdb")
    first = run_local(SPEC, tmp_path / "a", cache=CacheSettings(location=location), progress=False)
    cache_session.reset_sessions()  # LMDB allows one handle per process: the run's goes first
    store = open_store(location)
    key = next(iter(store.keys(RESULT_PREFIX.encode())))
    store.delete([key])
    store.put_if_absent(key, b"QHC1 not an entry")
    store.close()
    cache_session.reset_sessions()
    second = run_local(SPEC, tmp_path / "b", cache=CacheSettings(location=location), progress=False)
    assert estimate_bits(second) == estimate_bits(first)
    # Read as a miss (generate's lookup, then execute's), recomputed once, and replaced:
    assert second["cache"]["errors"] >= 1 and second["cache"]["computed"] == 1
    assert second["cache"]["written"] == 1
    cache_session.reset_sessions()
    third = run_local(SPEC, tmp_path / "c", cache=CacheSettings(location=location), progress=False)
    assert third["cache"]["errors"] == 0 and third["cache"]["computed"] == 0


def test_a_peek_serves_the_lookup_after_it_counted_as_read(tmp_path, monkeypatch):
    """A warm run's plan memo peeks at every result; its real lookup then reads none twice."""
    from qhybrid.cache.entries import ResultEntry
    from qhybrid.cache.session import CacheSession

    entry = ResultEntry(
        check="c", normal="n", fingerprint="f", identity="i", qubits="", provenance={"run": "r"},
        distribution=OutcomeDistribution(np.array([0, 3], dtype=np.uint64), np.array([0.5, 0.5]), 1, None),
        circuit_qpy=b"",
    )  # fmt: skip
    stored, missing, damaged = (f"{RESULT_PREFIX}{n}".encode() for n in ("kept", "none", "bad"))
    session = CacheSession(CacheSettings(location=str(tmp_path / "lmdb")))
    session.put_many([(stored, entry)])
    session._open("put").put_if_absent(damaged, b"QHC1 not an entry")
    peeked = session.get_many([stored, missing, damaged], peek=True)
    assert peeked[0] is not None and peeked[1:] == [None, None]
    assert session.counts["bytes_read"] == 0 and session.counts["corrupt"] == 0  # a peek counts nothing
    asked: list[list[bytes]] = []
    read = LmdbStore.get_many

    def spy(self, keys):
        asked.append(list(keys))
        return read(self, keys)

    monkeypatch.setattr(LmdbStore, "get_many", spy)
    found = session.get_many([stored, missing, damaged])
    assert asked == [[missing, damaged]]  # what the peek found is not read again
    assert (
        found[0] is not None
        and found[0].distribution.weights.tobytes() == entry.distribution.weights.tobytes()
    )
    assert found[1:] == [None, None]
    # The peeked entry counts as the read it stands for; the damaged one is read (and counted) now.
    assert session.counts["bytes_read"] == len(encode_result(entry)) + len(b"QHC1 not an entry")
    assert (
        session.counts["corrupt"] == 1
    )  # the damaged entry is still counted (and dropped) by the real lookup
    assert session.get_many([stored])[0] is not None and asked[-1] == [stored]  # a peek serves once


def test_entries_round_trip_without_pickle():
    distribution = OutcomeDistribution(np.array([1, 5], dtype=np.uint64), np.array([0.25, 0.75]), 2, None)
    from qhybrid.cache.entries import ResultEntry

    entry = ResultEntry(
        check="c", normal="n", fingerprint="f", identity="i", qubits="0,1", provenance={"run": "r"},
        distribution=distribution, circuit_qpy=b"qpy",
    )  # fmt: skip
    data = encode_result(entry)
    assert b"pickle" not in data and data[:4] == b"QHC1"
    back = decode_result(data)
    assert back.distribution.weights.tobytes() == distribution.weights.tobytes()
    assert back.provenance == {"run": "r"} and back.circuit_qpy == b"qpy"


def test_two_runs_at_once_sharing_one_redis_agree_bitwise_with_no_cache(uncached, redis_server, tmp_path):
    cache = CacheSettings(location=redis_server.url)
    reports: dict[str, dict] = {}

    def one(name: str) -> None:
        reports[name] = run_local(SPEC, tmp_path / name, cache=cache, progress=False)

    threads = [threading.Thread(target=one, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {estimate_bits(r) for r in reports.values()} == {uncached}
    cache_session.reset_sessions()
    again = run_local(SPEC, tmp_path / "c", cache=cache, progress=False)  # a new process's view: all hits
    assert estimate_bits(again) == uncached
    assert again["cache"]["from_store"] == again["counts"]["unique"] and again["cache"]["computed"] == 0


def test_two_worker_processes_sharing_one_lmdb_agree_bitwise_with_no_cache(uncached, tmp_path):
    cache = CacheSettings(location=str(tmp_path / "lmdb"))
    cold = run_local(SPEC, tmp_path / "cold", cache=cache, workers=2, batch_size=16, progress=False)
    cache_session.reset_sessions()
    warm = run_local(SPEC, tmp_path / "warm", cache=cache, workers=2, batch_size=16, progress=False)
    assert estimate_bits(cold) == estimate_bits(warm) == uncached
    assert warm["cache"]["computed"] == 0


def test_a_redis_killed_mid_run_degrades_to_computing_and_counts_it(uncached, redis_server, tmp_path):
    cache = CacheSettings(location=redis_server.url)
    executed = {"batches": 0}
    from qhybrid.pipeline import runner

    real_execute = runner.execute

    def execute_then_kill(*args, **kwargs):
        result = real_execute(*args, **kwargs)
        executed["batches"] += 1
        if executed["batches"] == 1:
            redis_server.stop()  # the cache dies after the first batch
        return result

    runner.execute = execute_then_kill
    try:
        report = run_local(SPEC, tmp_path / "run", cache=cache, batch_size=32, progress=False)
    finally:
        runner.execute = real_execute
    assert estimate_bits(report) == uncached
    assert executed["batches"] > 1
    assert report["cache"]["errors"] >= 1
    assert report["cache"]["computed"] + report["cache"]["from_memory"] == report["counts"]["unique"]


def test_an_unreachable_cache_never_fails_a_run(uncached, tmp_path):
    cache = CacheSettings(location="redis://127.0.0.1:9/0")
    report = run_local(SPEC, tmp_path / "run", cache=cache, progress=False)
    assert estimate_bits(report) == uncached
    # The first failure (planning) opens a rest; execute's lookups are then counted as skipped.
    assert report["cache"]["unavailable"] == report["counts"]["unique"] and report["cache"]["computed"] == 250


def test_the_cache_commands_report_verify_and_clear(tmp_path, redis_server):
    for number, location in enumerate((str(tmp_path / "lmdb"), redis_server.url)):
        run_cli(
            "run",
            "cutting",
            "--quiet",
            "--out",
            str(tmp_path / f"run{number}"),
            "--cache",
            location,
            "--plot",  # a drawn terms.png is kept in the cache too
            check=True,
        )
        stats = json.loads(run_cli("cache", "stats", "--cache", location, "--json", check=True).stdout)
        assert stats["results"] == 250 and stats["entries"] == 253  # + the plan, the reference, the plot
        verified = json.loads(
            run_cli("cache", "verify", "--cache", location, "--sample", "5", "--json", check=True).stdout
        )
        assert verified["match"] == 5 and verified["mismatch"] == 0
        # Poison one entry: right key, wrong numbers. verify finds it and exits 1.
        store = open_store(location)
        key = sorted(store.keys(RESULT_PREFIX.encode()))[0]
        (value,) = store.get_many([key])
        entry = decode_result(bytes(value))
        poisoned = OutcomeDistribution(
            entry.distribution.outcomes,
            entry.distribution.weights * 1.5,
            entry.distribution.num_observable_bits,
            None,
        )
        from dataclasses import replace

        store.delete([key])
        store.put_if_absent(key, encode_result(replace(entry, distribution=poisoned)))
        store.close()
        result = run_cli("cache", "verify", "--cache", location, "--sample", "250", "--json")
        assert result.returncode == 1 and json.loads(result.stdout)["mismatch"] == 1
        cleared = json.loads(
            run_cli("cache", "clear", "--cache", location, "--yes", "--json", check=True).stdout
        )
        assert cleared["deleted"] >= 250


def test_no_cache_is_off_and_the_default_is_the_xdg_folder(tmp_path):
    assert OFF.resolved() is None
    result = run_cli(
        "run", "cutting", "--quiet", "--json", "--out", str(tmp_path / "a"), "--no-cache", check=True
    )
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["cache"]["stores"] == [] and json.loads(result.stdout)["estimate"]
