"""The Perfetto/Chrome trace: valid trace-event JSON, monotonic per track, slices nest, numbers from the run."""
from __future__ import annotations

import json

import pytest

from tilesim import simulate
from tilesim.arch import load_arch
from tilesim.cli.main import main
from tilesim.compiler.schedule import lower
from tilesim.report.trace import trace_events
from tilesim.workloads import load_workload


def check_trace(events: list[dict]) -> None:
    """Required fields, timestamps monotonic per track, and X slices on a track either nested or disjoint."""
    by_track: dict[int, list[dict]] = {}
    for e in events:
        assert {"name", "ph", "pid", "tid"} <= set(e)
        if e["ph"] == "M":
            continue
        assert e["ph"] in ("X", "C") and isinstance(e["ts"], float) and e["ts"] >= 0
        if e["ph"] == "X":
            assert e["dur"] >= 0
            by_track.setdefault(e["tid"], []).append(e)
    for track in by_track.values():
        assert [e["ts"] for e in track] == sorted(e["ts"] for e in track)
        stack: list[float] = []                      # ends of the open parents
        for e in track:
            while stack and e["ts"] >= stack[-1] - 1e-9:
                stack.pop()
            end = e["ts"] + e["dur"]
            assert not stack or end <= stack[-1] + 1e-6, f"{e['name']} overlaps its parent"
            stack.append(end)


@pytest.mark.parametrize("workload, arch", [("resnet18", "edge-npu"), ("bert-base", "tpu-v4")])
def test_trace_is_valid_and_matches_the_run(workload, arch):
    a = load_arch(arch)
    kwargs = {"seq_len": 32} if workload == "bert-base" else {}
    r = simulate(lower(load_workload(workload, dtype=a.array.dtype, **kwargs), a), a, timeline=True)
    events = trace_events(r)
    check_trace(events)
    dma = [e for e in events if e["ph"] == "X" and e["tid"] == 1]
    busy_us = sum(e["dur"] for e in dma)
    assert busy_us == pytest.approx(r.engine_busy["dma"] * r.latency_s * 1e6, rel=1e-6)
    kernels = [e for e in events if e["ph"] == "X" and e["tid"] in (2, 3) and not e["name"].startswith("tile ")]
    # pure data movement (a gather) has no compute: it shows on the DMA track only
    assert {e["name"] for e in kernels} == {k.name for k in r.kernels if k.compute_cycles > 0}
    assert max(e["ts"] + e["dur"] for e in events if e["ph"] == "X") <= r.latency_s * 1e6 + 1e-6


def test_cli_trace_file(tmp_path, capsys):
    path = tmp_path / "t.json"
    assert main(["run", "-w", "gemm:256,256,256", "-a", "gemmini", "--trace", str(path), "-f", "json"]) == 0
    doc = json.loads(path.read_text())
    check_trace(doc["traceEvents"])
    assert any(e["ph"] == "C" for e in doc["traceEvents"])
