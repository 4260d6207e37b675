"""A read-only install with no writable cache folder runs without a traceback (numba's cache falls back)."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import tilesim
import tilesim.arch
import tilesim.compiler
import tilesim.workloads
from tilesim.core.kernels import jit

SUBPACKAGES = {"tilesim": tilesim, "tilesim/arch": tilesim.arch, "tilesim/compiler": tilesim.compiler,
               "tilesim/workloads": tilesim.workloads}


def read_only_copy(root: Path) -> Path:
    """The installed package copied under `root`, its kernels' __pycache__ a plain file, every file read-only."""
    site = root / "site"
    for rel, module in SUBPACKAGES.items():
        shutil.copytree(Path(module.__file__).parent, site / rel, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (site / "tilesim" / "core" / "kernels" / "__pycache__").write_text("not a folder")   # no in-tree cache
    for path in site.rglob("*"):
        path.chmod(path.stat().st_mode & ~0o222)
    return site


def run_tilesim(site: Path, root: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    """`python -m tilesim ARGS` on the copy, with HOME and XDG_CACHE_HOME below a plain file (never creatable)."""
    blocker = root / "blocker"
    blocker.write_text("")
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True, mode=0o777)
    tmp.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "TILESIM_"))}   # stores on
    env.update(PYTHONPATH=str(site), HOME=str(blocker / "home"), XDG_CACHE_HOME=str(blocker / "cache"),
               TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "tilesim", *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env, timeout=300)


def test_read_only_install_with_no_cache_folder_runs_from_a_private_temporary_cache(tmp_path):
    site = read_only_copy(tmp_path)
    # --trace: the timeline runs the numba tile pipeline (small programs alone run in Python until numba loads)
    run = run_tilesim(site, tmp_path, "run", "-w", "gemm:64,64,64", "-a", "edge-npu", "-f", "json", "--trace",
                      str(tmp_path / "trace.json"))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert json.loads(run.stdout)["cycles"] > 0
    cache = tmp_path / "tmp" / f"tilesim-numba-{os.getuid()}"
    assert any(cache.rglob("*.nbi")), "the kernels were cached in the private temporary folder"
    assert any((cache / "schedules").glob("*.schedule")), "and the schedule (sim/studies/schedule_store.py)"
    again = run_tilesim(site, tmp_path, "run", "-w", "gemm:64,64,64", "-a", "edge-npu", "-f", "json")
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(run.stdout), again.stderr
    listing = run_tilesim(site, tmp_path, "list", "archs")
    assert listing.returncode == 0 and "tpu-v1" in listing.stdout and not listing.stderr


def test_as_a_non_root_user_too(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to switch to the user 'nobody'")
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                            "import numba"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("this interpreter or its numba cannot be read by the user 'nobody'")
    tmp_path.chmod(0o755)
    site = read_only_copy(tmp_path)
    run = run_tilesim(site, tmp_path, "run", "-w", "gemm:64,64,64", "-a", "edge-npu", user="nobody")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr


def test_a_shared_or_foreign_cache_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(jit.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = Path(jit.private_cache_dir())
    assert folder.parent == tmp_path and stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    folder.chmod(0o777)                                     # another user could plant a pickled index here
    assert jit.private_cache_dir() is None
    folder.rmdir()
    folder.write_text("")                                   # not a folder
    assert jit.private_cache_dir() is None
