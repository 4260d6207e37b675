"""The on-disk store of lowered schedules (sim/studies/schedule_store.py): a run from the store reports what a run
that lowers does, keys that change with every input and the source, the same key in another process, files that
are damaged or writable by others ignored, a bounded folder, and the switch that turns it off."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import tilesim
from tilesim.arch import load_arch
from tilesim.cli.main import main
from tilesim.compiler import residency
from tilesim.compiler.schedule import CompileOptions
from tilesim.core import commands
from tilesim.core import simulate as simulate_module
from tilesim.studies import compare, llm, runs, schedule_store, stores
from tilesim.workloads import load_workload


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty store, turned on (the test suite turns it off: conftest.py)."""
    monkeypatch.setenv("TILESIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TILESIM_SCHEDULE_CACHE", "1")
    return tmp_path / "cache" / "schedules"


def refuse_lowering(monkeypatch):
    """Make lowering fail, so that a run can only succeed from the store."""
    def refuse(*args, **kwargs):
        raise AssertionError("lowered although a schedule was stored")
    for module in (runs, llm, compare):
        monkeypatch.setattr(module, "lower", refuse)


def report(result) -> str:
    return json.dumps(result.to_dict(), sort_keys=True)


@pytest.mark.parametrize(("workload", "arch", "options"), [
    ("bert-base", "edge-npu", {"seq_len": 32, "fusion": "full"}),
    ("gpt2", "h100", {"phase": "decode", "context": 64}),
])
def test_a_stored_schedule_reports_what_lowering_does(store, monkeypatch, workload, arch, options):
    first = tilesim.run(workload, arch, **options)
    files = list(store.glob("*.schedule"))
    assert len(files) == 1 and os.stat(store).st_mode & 0o077 == 0 and os.stat(files[0]).st_mode & 0o077 == 0
    with monkeypatch.context() as m:
        refuse_lowering(m)
        again = tilesim.run(workload, arch, **options)
    assert report(again) == report(first)
    if first.schedule is not None:
        assert again.schedule == first.schedule


def test_a_stored_schedule_brings_its_tile_commands(store, monkeypatch):
    # a run read from the store builds none of its kernels' tile commands and searches no cache tiling (h100 has
    # an L2 cache): both were stored with the schedule; as if in a new process (the process's memories emptied)
    options = {"phase": "prefill", "seq_len": 64}
    first = tilesim.run("gpt2", "h100", **options)
    monkeypatch.setattr(simulate_module, "_COMMANDS", {})
    monkeypatch.setattr(residency, "_CACHE_TRAFFIC", {})
    with monkeypatch.context() as m:
        refuse_lowering(m)
        m.setattr(commands, "kernel_runs", lambda *a, **k: pytest.fail("tile commands built again"))
        m.setattr(residency, "search", lambda *a, **k: pytest.fail("the cache's tiling searched again"))
        again = tilesim.run("gpt2", "h100", **options)
    assert report(again) == report(first)


def test_a_comparison_reads_each_policy_from_the_store(store, monkeypatch):
    first = tilesim.compare("bert-base", "edge-npu", seq_len=32)
    assert len(list(store.glob("*.schedule"))) == 3                     # none, epilogue, full
    single = tilesim.run("bert-base", "edge-npu", seq_len=32, fusion="epilogue")     # shared with a run
    assert len(list(store.glob("*.schedule"))) == 3
    with monkeypatch.context() as m:
        refuse_lowering(m)
        again = tilesim.compare("bert-base", "edge-npu", seq_len=32)
        assert report(tilesim.run("bert-base", "edge-npu", seq_len=32, fusion="epilogue")) == report(single)
    assert json.dumps(again.to_dict(), sort_keys=True) == json.dumps(first.to_dict(), sort_keys=True)


def test_a_sweeps_points_are_not_stored(store, tmp_path, capsys):
    out = tmp_path / "s.csv"
    for workload in ("gpt2", "gemm:256,512,128"):
        argv = ["sweep", "-w", workload, "-a", "edge-npu", "--jobs", "1", "--no-progress", "--grid",
                "array.rows=16,32", "-o", str(out)]
        assert main([*argv, *(["--phase", "decode", "--context", "48"] if workload == "gpt2" else [])]) == 0
    capsys.readouterr()
    assert not list(store.glob("*.schedule"))
    with schedule_store.off():
        tilesim.run("gemm:256,512,128", "tpu-v1")
    assert not list(store.glob("*.schedule"))
    tilesim.run("gemm:256,512,128", "tpu-v1")
    assert len(list(store.glob("*.schedule"))) == 1


def test_the_key_follows_graph_arch_options_and_share(monkeypatch):
    arch, graph, options = load_arch("tpu-v1"), load_workload("resnet18"), CompileOptions()
    key = schedule_store.schedule_key
    base = key(graph, arch, options)
    assert base is not None and base == key(load_workload("resnet18"), load_arch("tpu-v1"), CompileOptions())
    others = {key(load_workload("resnet18", batch=2), arch, options),
              key(graph, load_arch("tpu-v1", ["memory.unified_buffer.capacity_bytes=1048576"]), options),
              key(graph, load_arch("tpu-v1", ["energy.static_mw=1"]), options),
              key(graph, arch, CompileOptions(fusion="none")),
              key(graph, arch, CompileOptions(objective="edp")),
              key(graph, arch, options, 0.5)}
    assert base not in others and len(others) == 6
    with monkeypatch.context() as m:
        m.setattr(schedule_store, "SOURCE_MODULES", ())
        assert key(graph, arch, options) != base
    assert key(graph, arch, options, lambda: 0) is None          # no canonical form: not stored


def test_the_key_is_the_same_in_another_process():
    script = ("from tilesim.arch import load_arch; from tilesim.workloads import load_workload; "
              "from tilesim.compiler.schedule import CompileOptions; from tilesim.studies.schedule_store import "
              "schedule_key; print(schedule_key(load_workload('bert-base', seq_len=32), load_arch('edge-npu'), "
              "CompileOptions()))")
    keys = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONHASHSEED=str(seed))).stdout.strip() for seed in (1, 2)}
    here = schedule_store.schedule_key(load_workload("bert-base", seq_len=32), load_arch("edge-npu"),
                                       CompileOptions())
    assert keys == {here}


def test_value_keys_tell_values_apart():
    c = stores.value_key
    assert c((1, 2)) != c([1, 2]) and c(1) != c(1.0) != c(True) and c({"a": 1}) != c({"a": 1.0})
    assert c({1, 2, 3}) == c({3, 2, 1}) and c(frozenset("ab")) == c(frozenset("ba")) and c("a", "b") != c("ab")
    assert c(CompileOptions()) == c(CompileOptions()) != c(CompileOptions(fusion="none"))
    assert c(np.arange(3)) != c(np.arange(3).astype(np.int32)) and c(np.zeros(2)) != c(np.zeros((2, 1)))
    with pytest.raises(TypeError):
        c(type("Slots", (), {"__slots__": ()})())


def test_a_damaged_or_foreign_file_is_ignored_and_replaced(store, monkeypatch):
    first = tilesim.run("gemm:256,512,128", "tpu-v1")
    path = next(store.glob("*.schedule"))
    good = path.read_bytes()
    for junk in (b"", b"not a pickle", good[: len(good) // 2]):
        path.write_bytes(junk)
        assert report(tilesim.run("gemm:256,512,128", "tpu-v1")) == report(first)
        assert path.read_bytes() == good                       # made anew and stored again
    other = tilesim.run("gemm:512,512,128", "tpu-v1")         # another key's file in this key's place
    path.write_bytes(next(p for p in store.glob("*.schedule") if p != path).read_bytes())
    assert report(tilesim.run("gemm:256,512,128", "tpu-v1")) == report(first) != report(other)
    refuse_lowering(monkeypatch)
    path.chmod(0o666)                                          # others could have written it: not read
    with pytest.raises(AssertionError, match="lowered although"):
        tilesim.run("gemm:256,512,128", "tpu-v1")
    path.chmod(0o600)
    store.chmod(0o777)                                         # nor from a folder others may write
    with pytest.raises(AssertionError, match="lowered although"):
        tilesim.run("gemm:256,512,128", "tpu-v1")
    store.chmod(0o700)
    assert report(tilesim.run("gemm:256,512,128", "tpu-v1")) == report(first)


def test_the_store_keeps_the_most_recently_used_within_its_bounds(tmp_path):
    for i in range(6):
        (tmp_path / f"{i}.schedule").write_bytes(b"x" * 100)
        os.utime(tmp_path / f"{i}.schedule", ns=(i * 10**9, i * 10**9))
    (tmp_path / "other.txt").write_text("not ours to drop")
    for name, age_s in ((".a.schedule.x.tmp", 2 * schedule_store.STALE_S), (".b.schedule.y.tmp", 0)):
        (tmp_path / name).write_bytes(b"half")                  # left by a killed save; the new one may be in use
        os.utime(tmp_path / name, (time.time() - age_s,) * 2)
    schedule_store.prune(tmp_path, max_files=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.schedule.y.tmp", "2.schedule", "3.schedule",
                                                          "4.schedule", "5.schedule", "other.txt"]
    schedule_store.prune(tmp_path, max_bytes=250)
    assert sorted(p.name for p in tmp_path.glob("*.schedule")) == ["4.schedule", "5.schedule"]
    schedule_store.prune(tmp_path, max_bytes=0)                # the newest always stays
    assert [p.name for p in tmp_path.glob("*.schedule")] == ["5.schedule"]


def test_a_save_leaves_no_temporary_file_whatever_happens(tmp_path, monkeypatch):
    schedule = tilesim.run("gemm:64,64,64", "tpu-v1").schedule
    assert schedule_store.save(tmp_path / "k.schedule", "k", schedule)
    assert schedule_store.load(tmp_path / "k.schedule", "k") == (schedule, None)
    assert schedule_store.load(tmp_path / "k.schedule", "other key") is None

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(schedule_store.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        schedule_store.save(tmp_path / "j.schedule", "j", schedule)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.schedule"]


def test_a_read_refreshes_a_schedule_so_it_is_pruned_last(store):
    tilesim.run("gemm:256,512,128", "tpu-v1")
    path = next(store.glob("*.schedule"))
    os.utime(path, (0, 0))
    tilesim.run("gemm:256,512,128", "tpu-v1")
    assert path.stat().st_mtime > time.time() - 600


def test_the_store_can_be_turned_off_and_falls_back_when_unwritable(store, tmp_path, monkeypatch):
    monkeypatch.setenv("TILESIM_SCHEDULE_CACHE", "0")
    tilesim.run("gemm:256,512,128", "tpu-v1")
    assert not store.exists()
    monkeypatch.setenv("TILESIM_SCHEDULE_CACHE", "1")
    blocked = tmp_path / "file"
    blocked.write_text("")                                     # a file where the folder would go
    monkeypatch.setenv("TILESIM_CACHE_DIR", str(blocked / "cache"))
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(stores, "private_cache_dir", lambda: str(private))
    first = tilesim.run("gemm:256,512,128", "tpu-v1")
    assert len(list((private / "schedules").glob("*.schedule"))) == 1
    monkeypatch.setattr(stores, "private_cache_dir", lambda: None)
    assert report(tilesim.run("gemm:256,512,128", "tpu-v1")) == report(first)     # nothing stored, nothing fails
