"""Sweep workers end with the sweep, whatever ends it (issue 21 item 7): the Dask backend's own LocalCluster workers
(process workers: tests/test_sweep.py test_workers_end_with_their_parent)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children, ...), from Linux /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_until(test, timeout_s: float) -> bool:
    """Poll `test` until it holds or the time is up; its last value."""
    deadline = time.time() + timeout_s
    while not test() and time.time() < deadline:
        time.sleep(0.2)
    return test()


def kill_all(pids) -> None:
    """SIGKILL whatever of `pids` is left (cleanup)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


WATCHED = """
import sys, time
from tilesim.studies import sweep
sweep._end_with(int(sys.argv[1]), period_s=0.1)
print("watching", flush=True)
time.sleep(60)
"""
MIDDLE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(60)
"""
TOP = """
import os, subprocess, sys, time
middle = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())],
                          stdout=subprocess.PIPE, text=True)
print(middle.pid, middle.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


def test_the_dask_watchdog_ends_a_worker_when_the_sweep_is_killed_even_below_another_parent():
    # a Dask worker's parent is its nanny, not necessarily the sweep: the watchdog watches the sweep's process id
    top = subprocess.Popen([sys.executable, "-c", TOP, MIDDLE, WATCHED], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    middle, worker, said = top.stdout.readline().split()
    middle, worker = int(middle), int(worker)
    try:
        assert said == "watching" and alive(worker)
        time.sleep(0.3)
        assert alive(worker)                          # the watchdog leaves it alone while the sweep runs
        top.kill()
        top.wait()
        assert wait_until(lambda: not alive(worker), 10), "the worker outlived the sweep's process"
        assert alive(middle)                          # its own parent lives on: it was the sweep that ended
    finally:
        kill_all((middle, worker))


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_dask_workers_end_with_the_sweep(tmp_path, signum):
    pytest.importorskip("distributed")
    cmd = [sys.executable, "-m", "tilesim", "sweep", "-w", "resnet18", "-a", "edge-npu", "--jobs", "2",
           "--backend", "dask", "--no-progress", "--grid", "array.rows=" + ",".join(map(str, range(4, 64))),
           "-o", str(tmp_path / "s.csv")]
    err = (tmp_path / "stderr").open("w")        # the sweep's and its workers'
    parent = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    workers: set[int] = set()
    try:
        def spawned() -> bool:
            workers.update(p for p in descendants(parent.pid) if b"spawn_main" in _cmdline(p))
            return len(workers) >= 2 or parent.poll() is not None
        assert wait_until(spawned, 120) and len(workers) >= 2, "the sweep did not start its Dask workers"
        time.sleep(2)                                 # the workers are busy with points
        parent.send_signal(signum)
        parent.wait(timeout=60)
        assert wait_until(lambda: not any(alive(w) for w in workers), 20), \
            f"Dask workers outlived their sweep ({signal.Signals(signum).name})"
        err.close()
        # workers that lost their scheduler logged a traceback each (distributed's ERROR level)
        assert "Traceback" not in (tmp_path / "stderr").read_text()
    finally:
        kill_all((parent.pid, *workers))
        parent.wait()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
