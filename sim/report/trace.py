"""Chrome/Perfetto trace of a run (`--trace trace.json`): one track per engine, one slice per tile command.

Tracks: the off-chip DMA channel (each load or store occupies it for bytes / bandwidth; latency is not shown as
occupancy), the array and the vector unit (each tile's compute, nested inside a slice per kernel), and a counter of
the DMA bandwidth in use. Timestamps are microseconds at the arch clock (Chrome trace-event format, which
ui.perfetto.dev and chrome://tracing open).
"""
from __future__ import annotations

import json

import numpy as np

from tilesim.core.commands import ARRAY, VECTOR
from tilesim.core.result import SimResult
from tilesim.studies.llm import LLMResult, simulated_steps, step_windows

PID = 1
TRACKS = {"dma": 1, "array": 2, "vector": 3}


def trace_events(result: SimResult, pid: int = PID, offset_us: float = 0.0, title: str | None = None) -> list[dict]:
    """Trace events (metadata, complete 'X' slices and 'C' counters), sorted by track then time; `pid`, `title`
    and `offset_us` place one run of several (an LLM's prefill and decode steps) in its own process, at its start
    time."""
    t = result.timeline
    if t is None:
        raise ValueError("simulate(..., timeline=True) keeps the event times a trace needs")
    us = 1e6 / result.clock_hz
    events = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
               "args": {"name": title or f"tilesim: {result.workload} on {result.arch}"}}]
    events += [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}
               for name, tid in TRACKS.items()]
    kernel_of = np.repeat(np.arange(len(t.kernels)), np.diff(t.first_tile))
    slices, counters = [], []
    bw = result.offchip_bytes_per_cycle * result.clock_hz / 1e9        # GB/s while a transfer streams
    for xfer, end, kind in ((t.load_xfer, t.load_end, "load"), (t.store_xfer, t.store_end, "store")):
        for i in np.flatnonzero(xfer > 0):
            start = max(end[i] - t.latency - xfer[i], 0.0)        # float rounding can dip below 0
            slices.append(_slice(f"{kind} {t.kernels[kernel_of[i]]}", "dma", start * us, xfer[i] * us,
                                 {"tile": int(i)}))
            counters += [(start * us, bw), ((start + xfer[i]) * us, 0.0)]
    for engine, track in ((ARRAY, "array"), (VECTOR, "vector")):
        for k, name in enumerate(t.kernels):
            tiles = np.arange(t.first_tile[k], t.first_tile[k + 1])
            tiles = tiles[(t.engine[tiles] == engine) & (t.compute_end[tiles] > t.compute_start[tiles])]
            if tiles.size == 0:
                continue
            lo, hi = t.compute_start[tiles].min(), t.compute_end[tiles].max()
            slices.append(_slice(name, track, lo * us, (hi - lo) * us, {"tiles": int(tiles.size)}))
            slices += [_slice(f"tile {int(i) - int(t.first_tile[k])}", track, t.compute_start[i] * us,
                              (t.compute_end[i] - t.compute_start[i]) * us, {}) for i in tiles]
    slices.sort(key=lambda e: (e["tid"], e["ts"], -e["dur"]))
    counters.sort(key=lambda c: c[0])
    for e in slices:
        e["pid"], e["ts"] = pid, e["ts"] + offset_us
    events += slices
    events += [{"name": "DMA bandwidth (GB/s)", "ph": "C", "pid": pid, "tid": TRACKS["dma"], "ts": ts + offset_us,
                "args": {"GB/s": value}} for ts, value in counters]
    return events


def _slice(name: str, track: str, ts: float, dur: float, args: dict) -> dict:
    return {"name": name, "ph": "X", "pid": PID, "tid": TRACKS[track], "ts": float(ts), "dur": float(dur),
            "args": args}


def llm_trace_events(r: LLMResult) -> list[dict]:
    """An LLM run on one timeline: a 'run' process with a slice for the prefill and one per span of decode steps
    (their summed time), and each simulated step (the prefill, every sampled decode step) as its own process of
    engine tracks, starting where it runs; decode steps between the samples are interpolated, so only their span
    shows."""
    steps = [{"name": "process_name", "ph": "M", "pid": PID, "tid": 0, "args": {"name": "tilesim: LLM run phases"}},
             {"name": "thread_name", "ph": "M", "pid": PID, "tid": 1, "args": {"name": "steps"}}]
    for step in step_windows(r):
        steps.append(_step_slice(*step))
    events = [e for pid, (title, at_s, sim) in enumerate(simulated_steps(r), start=PID + 1)
              for e in trace_events(sim, pid, at_s * 1e6, title)]
    return steps + events


def _step_slice(name: str, start_s: float, dur_s: float, args: dict) -> dict:
    return {"name": name, "ph": "X", "pid": PID, "tid": 1, "ts": start_s * 1e6, "dur": dur_s * 1e6, "args": args}


def llm_trace_json(r: LLMResult) -> str:
    """The LLM run's trace as JSON text."""
    return json.dumps({"traceEvents": llm_trace_events(r), "displayTimeUnit": "ns"}, allow_nan=False)


def trace_json(result: SimResult) -> str:
    """The trace as JSON text (object form with displayTimeUnit)."""
    return json.dumps({"traceEvents": trace_events(result), "displayTimeUnit": "ns"}, allow_nan=False)
