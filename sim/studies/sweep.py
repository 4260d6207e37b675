"""`tilesim sweep` (issue 10): design points over dotted arch fields, run in parallel, written to a resumable CSV.

Files: the sweep appends each finished row to `<out>.partial` (a CSV with the final header, flushed per row, in
completion order). At the end the rows are written in point order to a temporary file that is renamed onto `<out>`,
and the `.partial` file is removed. `--resume` reuses the rows of `<out>` and `<out>.partial` whose grid values and
`setup` (a hash of everything else the numbers depend on: the base arch after --set, the workload, batch, sequence
length, dtype, --dim and the compile options) match this sweep; rows with status `error` are recomputed.
"""
from __future__ import annotations

import contextlib
import csv
import ctypes
import ctypes.util
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
import types
import typing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

try:
    import fcntl
except ImportError:             # Windows: sweeps run without the output lock
    fcntl = None

from tilesim.arch import load_arch
from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import InputError, did_you_mean
from tilesim.arch.loader import apply_overrides, arch_from_dict, load_yaml_text
from tilesim.compiler.cost import trip_counts
from tilesim.compiler.fusion import group_ops
from tilesim.compiler.lowering import Contraction
from tilesim.compiler.mapper import SWEEP_RANKINGS_BYTES, keep_rankings, without_capacities
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.commands import flash_share
from tilesim.core.files import write_atomic
from tilesim.core.result import SimResult
from tilesim.core.simulate import kernel_evaluator, simulate, use_compiled_kernels
from tilesim.studies import schedule_store
from tilesim.studies.llm import llm_dict
from tilesim.studies.options import BACKENDS, LLMOptions, OptionError, WorkloadOptions, at_least, not_an_llm
from tilesim.studies.runs import DecoderConfig, check_decoder, check_graph_fits, run_decoder, workload_graph
from tilesim.workloads import decoder_config, load_workload
from tilesim.workloads.llm import DEFAULT_SEQ_LEN

STATUSES = ("ok", "invalid", "error")      # error: an internal error (a bug), recomputed by --resume
SETTING_COLUMNS = ("workload", "arch", "fusion", "mapper", "objective")
METRICS = ("cycles", "latency_s", "macs", "pe_utilization", "mbu", "energy_pj", "pj_per_mac", "dram_read_bytes",
           "dram_write_bytes", "area_mm2", "edp", "inferences_per_s", "macs_per_s", "perf_per_mm2",
           "peak_macs_per_cycle", "pes", "onchip_bytes", "kernels", "memory_bound_kernels", "array_busy",
           "vector_busy", "dma_busy")     # no arch field's name (e.g. clock_hz, timing): those can be grid keys
# decoder LLM sweeps (--phase prefill|decode|generate) add the LLM report's figures (sim/llm.py, llm_dict); there the
# METRICS are those of the whole run, and the per-simulation ones (kernels, busy fractions) are left empty
LLM_METRICS = ("batch", "prompt_len", "gen_tokens", "tokens", "ttft_s", "tpot_s", "tokens_per_s", "pj_per_token",
               "prefill_pj_per_token", "decode_pj_per_token", "kv_cache_bytes", "weight_bytes", "flash_weight_bytes",
               "flash_read_bytes")
HIGHER_IS_BETTER = ("pe_utilization", "mbu", "inferences_per_s", "macs_per_s", "perf_per_mm2", "array_busy",
                    "tokens_per_s")
OBJECTIVE_METRIC = {"latency": "latency_s", "energy": "energy_pj", "edp": "edp"}


# ---------------------------------------------------------------- design points

def split_values(text: str) -> list[str]:
    """'8,16,[a,b]' -> ['8', '16', '[a,b]']: commas inside brackets, braces or quotes do not split."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        else:
            depth += ch in "[{"
            depth -= ch in "]}"
        if ch == "," and depth == 0 and not quote:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*out, cur.strip()]


# ---------------------------------------------------------------- option axes

# Workload, LLM and compile options a grid may vary besides arch fields, read from their dataclasses (the table the
# CLI's flags come from, sim/studies/options.py): name -> (the SweepSpec field holding it, its class). Not axes:
# dims (pairs, --dim), pinned (a file, --mapping) and timing, which is the arch's own top-level field.
OPTION_HOLDERS = (("workload", WorkloadOptions), ("llm", LLMOptions), ("options", CompileOptions))
NOT_AXES = ("dims", "pinned", "timing")
OPTION_AXES: dict[str, tuple[str, type]] = {f.name: (holder, cls) for holder, cls in OPTION_HOLDERS
                                            for f in dataclasses.fields(cls) if f.name not in NOT_AXES}
LLM_AXES = tuple(f.name for f in dataclasses.fields(LLMOptions))
ARCH_TOP_FIELDS = tuple(f.name for f in dataclasses.fields(ArchConfig))


def axis_type(name: str) -> tuple[type, tuple[str, ...] | None]:
    """(int, float or str; the allowed values of a Literal) of an option axis, from its field's type hint."""
    _, cls = OPTION_AXES[name]
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] \
        if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    inner = args[0]
    if typing.get_origin(inner) is typing.Literal:
        return str, typing.get_args(inner)
    return (inner if inner in (int, float) else str), None


def axis_value(key: str, text: str):
    """An option axis's value in its field's type; a bad one is a one-line error naming the axis and what is
    allowed. Text values may be quoted ("gemm:64,64,64") so that commas stay inside them."""
    kind, choices = axis_type(key)
    bare = _unquoted(text)
    if choices is not None:
        if bare not in choices:
            raise OptionError("grid", f"got '{bare}'{did_you_mean(bare, choices)}; allowed: {', '.join(choices)}",
                              detail=key)
        return bare
    if kind is str:
        return bare
    value = load_yaml_text(bare, f"--grid {key}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError("grid", f"'{bare}' is not an integer", detail=key)
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise OptionError("grid", f"'{bare}' is not a number", detail=key)
    return float(value) if kind is float else value


def _unquoted(text: str) -> str:
    """Text without surrounding quotes: '"gemm:64,64,64"' -> 'gemm:64,64,64'."""
    bare = text.strip()
    return bare[1:-1] if len(bare) >= 2 and bare[0] == bare[-1] and bare[0] in "'\"" else bare


def canonical_key(key: str) -> str:
    """A grid key as the column it makes: option names given as flags (seq-len) become field names (seq_len)."""
    name = key.replace("-", "_")
    return name if "." not in key and name in OPTION_AXES else key


def parse_axis(item: str) -> tuple[tuple[str, ...], list[str]]:
    """'array.rows=8,16' -> (('array.rows',), ['8', '16']); a tied axis 'array.rows,array.cols=8,16' gives both
    keys each value together. Values are YAML scalars as in --set (units allowed)."""
    key, sep, text = item.partition("=")
    keys = tuple(canonical_key(k.strip()) for k in key.split(","))
    if not sep or not key.strip():
        raise OptionError("grid", "expected KEY=V1,V2,..., e.g. {grid} array.rows=16,32,64", detail=item)
    if any(not k for k in keys):
        raise OptionError("grid", "empty key in a tied axis; e.g. {grid} array.rows,array.cols=8,16", detail=key)
    label = ",".join(keys)
    values = [_unquoted(v) if all(k in OPTION_AXES for k in keys) else v for v in split_values(text)]
    if not text.strip() or any(v == "" for v in values):
        raise OptionError("grid", f"empty value in '{text}'; give V1,V2,... e.g. {{grid}} {label}=16,32",
                          detail=label)
    for k in keys:
        for v in values:
            if k in OPTION_AXES:
                axis_value(k, v)                      # a bad option value is one line now, not per point
            else:
                load_yaml_text(v, f"--grid {k}")      # malformed YAML is a one-line error now, not per point
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise OptionError("grid", f"value '{twice[0]}' given twice", detail=label)
    return keys, values


def parse_axes(grids: list[str]) -> list[tuple[tuple[str, ...], list[str]]]:
    """All --grid options as (keys, values) in the order given (several keys: a tied axis); a key given twice or a
    result column is a one-line error (check_fields checks the names against the arch and the options)."""
    if not grids:
        raise InputError("sweep: give at least one --grid KEY=V1,V2,..., e.g. --grid array.rows=16,32,64")
    axes = [parse_axis(g) for g in grids]
    keys = [k for ks, _ in axes for k in ks]
    for k in keys:
        if keys.count(k) > 1:
            raise OptionError("grid", "given twice; list all its values in one {grid}", detail=k)
        if k in RESERVED_COLUMNS and k not in OPTION_AXES:
            raise OptionError("grid", "not an arch field (it is a column of the results)", detail=k)
    return axes


def parse_grids(grids: list[str]) -> list[tuple[str, list[str]]]:
    """All --grid options as (key, values), one per key (the keys of a tied axis each with the axis's values)."""
    return [(k, values) for keys, values in parse_axes(grids) for k in keys]


def axis_labels(grids: list[str]) -> list[tuple[str, list[str]]]:
    """The axes as (label, values), a tied axis labelled by its keys joined with commas (plots' axes)."""
    return [(",".join(keys), values) for keys, values in parse_axes(grids)]


def grid_points(grids: list[str]) -> list[dict[str, str]]:
    """The cartesian product of the --grid options: the first grid varies slowest, the last fastest; the keys of a
    tied axis take each value together."""
    axes = parse_axes(grids)
    return [{k: v for (keys, _), v in zip(axes, combo, strict=True) for k in keys}
            for combo in itertools.product(*(v for _, v in axes))]


def random_points(grids: list[str], k: int, seed: int = 0) -> list[dict[str, str]]:
    """k distinct points of the grid drawn without replacement (deterministic per seed), in grid order."""
    axes = parse_axes(grids)
    sizes = [len(v) for _, v in axes]
    total = 1
    for s in sizes:
        total *= s
    if not 1 <= k <= total:
        raise OptionError("random", f"must be between 1 and the grid's {total:,} points", detail=str(k))
    picks = sorted(random.Random(seed).sample(range(total), k))
    return [_point_at(axes, sizes, i) for i in picks]


def _point_at(axes, sizes: list[int], index: int) -> dict[str, str]:
    """The index-th point of the cartesian product (same order as grid_points)."""
    point = {}
    for (keys, values), size in zip(reversed(axes), reversed(sizes), strict=False):
        index, r = divmod(index, size)
        point[keys] = values[r]
    return {k: point[keys] for keys, _ in axes for k in keys}


def check_fields(raw: dict, axes: list[tuple[str, list[str]]]) -> None:
    """Every grid key must name an arch field (applied to the raw arch, so typos get the loader's did-you-mean) or
    an option axis (OPTION_AXES, each value checked now)."""
    for key, values in axes:
        if key in OPTION_AXES:
            for v in values:
                axis_value(key, v)
            continue
        if "." not in key and key not in ARCH_TOP_FIELDS:
            allowed = (*OPTION_AXES, *ARCH_TOP_FIELDS)
            raise OptionError("grid", f"not an arch field or a workload option{did_you_mean(key, allowed)}; "
                                      f"options: {', '.join(OPTION_AXES)}; arch fields by dotted path (e.g. "
                                      "array.rows) or top-level ones: " + ", ".join(ARCH_TOP_FIELDS), detail=key)
        apply_overrides(raw, [f"{key}={values[0]}"], label="--grid")


def option_values(point: dict[str, str]) -> dict[str, dict]:
    """The point's option axes by the SweepSpec field holding them: {'workload': {...}, 'llm': {...}, ...}."""
    parts: dict[str, dict] = {holder: {} for holder, _ in OPTION_HOLDERS}
    for k, v in point.items():
        if k in OPTION_AXES:
            parts[OPTION_AXES[k][0]][k] = axis_value(k, v)
    return parts


def point_spec(spec: SweepSpec, point: dict[str, str]) -> SweepSpec:
    """The spec with the point's option values (the spec itself when it has none). With a phase axis the base
    --context is the decode points' only and --prompt-len/--seq-len the other points' only; base LLM options apply
    to the decoder LLM points only, and an LLM axis on another workload's point is an error (an invalid row)."""
    parts = option_values(point)
    if not any(parts.values()):
        return spec
    workload = dataclasses.replace(spec.workload, **parts["workload"])
    llm = dataclasses.replace(spec.llm, **parts["llm"])
    if "phase" in parts["llm"] and llm.phase != "decode" and "context" not in parts["llm"]:
        llm = dataclasses.replace(llm, context=None)
    if "phase" in parts["llm"] and llm.phase == "decode":     # the prompt's length is the other phases' only
        if "prompt_len" not in parts["llm"]:
            llm = dataclasses.replace(llm, prompt_len=None)
        if "seq_len" not in parts["workload"] and decoder_config(workload.workload) is not None:
            workload = dataclasses.replace(workload, seq_len=None)
    if decoder_config(workload.workload) is None:
        if parts["llm"]:
            raise not_an_llm(workload.workload)
        llm = LLMOptions()
    return dataclasses.replace(spec, workload=workload, llm=llm,
                               options=dataclasses.replace(spec.options, **parts["options"]))


def check_option_axes(spec: SweepSpec, axes: list[tuple[str, list[str]]]) -> SweepSpec:
    """Check the option axes before any point runs: each value on the base spec, every workload loads, LLM axes
    need a decoder LLM, each (workload, phase) pair takes each LLM value; returns the spec, marked when the rows
    need the LLM columns."""
    values = dict(axes)
    array = spec.raw_arch.get("array")
    base_dtype = (array.get("dtype") if isinstance(array, dict) else None) or "int8"

    def load(one: SweepSpec) -> None:
        w = one.workload
        load_workload(w.workload, seq_len=w.seq_len, batch=w.batch, dtype=w.graph_dtype(base_dtype),
                      dims=dict(w.dims), dtypes=w.dtypes)       # a bad workload or dtype fails now, not per point

    for k, vs in axes:
        if k in OPTION_AXES and k not in LLM_AXES and k != "workload":
            for v in vs:
                _check_point(spec, {k: v}, lambda one: None)
    names = values.get("workload", [spec.workload.workload])
    decoders = {}
    for name in names:
        _check_point(spec, {"workload": name} if "workload" in values else {}, load)
        decoders[name] = decoder_config(axis_value("workload", name))
    llm_axes = [k for k in values if k in LLM_AXES]
    if not any(decoders.values()) and llm_axes:
        raise OptionError(("grid", *llm_axes), f"only for decoder LLMs (gpt2, llama2-7b, ... or an HF config.json), "
                                               f"not {', '.join(repr(n) for n in names)}")
    if not any(decoders.values()) and spec.llm.given:
        raise not_an_llm(spec.workload.workload)
    for name, cfg in decoders.items():
        base = {"workload": name} if "workload" in values else {}
        if cfg is None:                                   # a dtype this workload cannot take fails now
            for v in values.get("dtype", []):
                _check_point(spec, base | {"dtype": v}, load)
            continue
        singles = [{}] + [{k: v} for k, vs in axes if k in OPTION_AXES and k not in ("workload", "phase") for v in vs]
        for phase in values.get("phase", [None]):
            at = base | ({"phase": phase} if phase is not None else {})
            for single in singles:
                _check_point(spec, at | single, lambda one, c=cfg: check_decoder(c, one.workload, one.llm,
                                                                                  base_dtype))
    if not any(decoders.values()):
        return dataclasses.replace(spec, llm=LLMOptions())      # no decoder LLM: LLM options play no part
    return dataclasses.replace(spec, llm_columns=True)


def _check_point(spec: SweepSpec, point: dict[str, str], check) -> None:
    """check(the point's spec); an InputError becomes one line naming the grid values ('--grid phase=decode: ...')."""
    try:
        check(point_spec(spec, point) if point else spec)
    except InputError as e:
        if not point:
            raise
        where = " ".join(f"{k}={v}" for k, v in point.items())
        raise OptionError("grid", _one_line(e.message if isinstance(e, OptionError) and len(point) == 1 and
                                            e.names == tuple(point) else str(e)), detail=where) from None


# ---------------------------------------------------------------- one design point

@dataclass(frozen=True)
class SweepSpec:
    """What every point shares: the base arch (after --set), the workload and how it is lowered (a workload given
    as a name is WorkloadOptions(name))."""
    raw_arch: dict                  # parsed arch mapping with --set applied (not validated: the grid may fix it)
    source: str                     # where the arch came from, for messages
    arch: str                       # the --arch spec as given (the `arch` column)
    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    options: CompileOptions = field(default_factory=CompileOptions)
    llm: LLMOptions = field(default_factory=LLMOptions)  # decoder LLMs: phase, context, tokens, MLP sparsity
    llm_columns: bool = False       # a workload axis holds a decoder LLM: every row has the LLM columns

    def __post_init__(self) -> None:
        if isinstance(self.workload, str):
            object.__setattr__(self, "workload", WorkloadOptions(self.workload))

    @cached_property
    def setup(self) -> str:
        """Short hash of everything but the grid values; --resume reuses only rows with the same setup. The LLM
        options count only when set, so other sweeps keep the setup they had before those options existed."""
        w = self.workload
        d = {"raw_arch": self.raw_arch, "source": self.source, "arch": self.arch, "workload": w.workload,
             "options": dataclasses.asdict(self.options), "seq_len": w.seq_len, "batch": w.batch, "dtype": w.dtype,
             "dims": self.dims, "dtypes": w.dtypes}
        if w.sparsity is not None:          # only when set: other sweeps keep their setup
            d["weight_sparsity"] = w.sparsity.describe()
        for f in dataclasses.fields(LLMOptions):
            if getattr(self.llm, f.name) != f.default:
                d[f.name] = getattr(self.llm, f.name)
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def dims(self) -> tuple[tuple[str, int], ...]:
        """The workload's symbolic dimensions, sorted by name."""
        return tuple(sorted(self.workload.dims))

    @cached_property
    def decoder(self) -> DecoderConfig | None:
        """The decoder LLM's config (its points run as `tilesim run` runs one: studies/runs.py), else None."""
        return decoder_config(self.workload.workload)

    @property
    def is_llm(self) -> bool:
        """Whether the workload is a decoder LLM."""
        return self.decoder is not None

    @property
    def has_llm_columns(self) -> bool:
        """Whether the rows carry the phase and LLM_METRICS (a decoder LLM among the sweep's workloads)."""
        return self.is_llm or self.llm_columns


RESERVED_COLUMNS = ("status", *SETTING_COLUMNS, "phase", *METRICS, *LLM_METRICS, "setup", "reason")


def columns(keys: list[str], llm: bool = False) -> list[str]:
    """CSV header: the grid keys, status, the sweep's settings, the metrics, setup and reason; LLM sweeps add the
    phase to the settings and LLM_METRICS to the metrics. A grid key that is also a setting or LLM figure (an
    option axis: workload, fusion, batch, ...) is a column once, among the grid keys."""
    rest = ["status", *SETTING_COLUMNS, "phase", *METRICS, *LLM_METRICS, "setup", "reason"] if llm else \
        ["status", *SETTING_COLUMNS, *METRICS, "setup", "reason"]
    return [*list(keys), *(c for c in rest if c not in keys)]


def header_of(spec, keys: list[str]) -> list[str]:
    """The CSV header of a sweep: columns() for a SweepSpec; another spec (studies/system_sweep.py) gives its own."""
    return columns(keys, spec.has_llm_columns) if isinstance(spec, SweepSpec) else spec.header(keys)


def _cell(value) -> str:
    """A CSV cell as text (rows are kept as text so resumed and fresh rows are written identically)."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def metrics(result: SimResult, arch) -> dict:
    """The summary numbers of one run (docs/design.md section 8) plus EDP, throughput and area efficiency."""
    r = result
    macs_per_s = r.macs / r.latency_s if r.latency_s else 0.0
    return {
        "cycles": r.cycles, "latency_s": r.latency_s, "macs": r.macs, "pe_utilization": r.pe_utilization,
        "mbu": r.mbu, "energy_pj": r.energy_pj, "pj_per_mac": r.pj_per_mac, "dram_read_bytes": r.dram_read_bytes,
        "dram_write_bytes": r.dram_write_bytes, "area_mm2": r.area_mm2, "edp": r.latency_s * r.energy_pj,
        "inferences_per_s": 1.0 / r.latency_s if r.latency_s else 0.0, "macs_per_s": macs_per_s,
        "perf_per_mm2": macs_per_s / r.area_mm2 if r.area_mm2 else None,
        "peak_macs_per_cycle": r.peak_macs_per_cycle, **_size(arch),
        "kernels": len(r.kernels),
        "memory_bound_kernels": sum(k.bound == "memory" for k in r.kernels),
        "array_busy": r.engine_busy["array"], "vector_busy": r.engine_busy["vector"], "dma_busy": r.engine_busy["dma"],
    }


def _size(arch) -> dict:
    """PEs and on-chip bytes of the whole chip."""
    return {"pes": arch.array.rows * arch.array.cols * arch.array.count * arch.cores,
            "onchip_bytes": sum(lv.capacity_bytes for lv in arch.onchip) * arch.cores}


def llm_metrics(report: dict, arch) -> dict:
    """The row of an LLM point from its `tilesim run` JSON (sim/llm.py, llm_dict): the whole run's numbers as
    METRICS (an 'inference' is the run), and LLM_METRICS as reported."""
    d = report
    latency, energy, macs = d["latency_s"], d["energy_pj"], d["macs"]
    macs_per_s = macs / latency if latency else 0.0
    row = {k: d[k] for k in ("cycles", "latency_s", "macs", "pe_utilization", "mbu", "energy_pj", "dram_read_bytes",
                             "dram_write_bytes", "area_mm2")}
    row.update(pj_per_mac=energy / macs if macs else 0.0, edp=latency * energy,
               inferences_per_s=1.0 / latency if latency else 0.0, macs_per_s=macs_per_s,
               perf_per_mm2=macs_per_s / d["area_mm2"] if d["area_mm2"] else None,
               peak_macs_per_cycle=arch.peak_macs_per_cycle, **_size(arch))
    row.update({k: d[k] for k in LLM_METRICS})
    return row


_GRAPHS: dict = {}      # per process: (graph, grouping) by dtype (a point may change the array's dtype)


def _graph(spec: SweepSpec, arch):
    """The workload graph for the point's arch dtype and its fusion grouping (which only the arch's epilogue_ops
    changes), built once per process."""
    w = spec.workload
    key = (w.workload, w.seq_len, w.batch, w.graph_dtype(arch.array.dtype), spec.dims, w.dtypes, spec.options.fusion,
           w.sparsity, arch.epilogue_ops)
    if key not in _GRAPHS:
        graph = workload_graph(arch, w)
        _GRAPHS[key] = graph, group_ops(graph, spec.options.fusion, arch.epilogue_ops)
    return _GRAPHS[key]


def point_arch(spec: SweepSpec, point: dict[str, str]):
    """The ArchConfig of one design point; bad values raise InputError worded for --grid."""
    raw = apply_overrides(spec.raw_arch, [f"{k}={v}" for k, v in point.items() if k not in OPTION_AXES],
                          label="--grid")
    return arch_from_dict(raw, spec.source)


def simulate_point(spec: SweepSpec, point: dict[str, str]):
    """(arch, SimResult) of one design point; bad input raises InputError."""
    arch = point_arch(spec, point)
    spec = point_spec(spec, point)
    graph, grouping = _graph(spec, arch)
    check_graph_fits(graph, arch)               # the graph is shared by points; each arch's memory is checked
    timing = spec.options.resolved_timing(arch)
    seen, memo, alone = _shared(arch, timing)
    evaluate = _evaluator(arch, timing, spec.options.objective, seen, memo, alone)
    return arch, simulate(lower(graph, arch, spec.options, evaluate, grouping), arch, memo=memo)


_SHARED: dict = {}          # per process, per arch without its capacities: kernel evaluations and tile commands
_KEEP_ARCHS = 8             # archs whose entries are kept (points of one array shape run together: chunks())


def _shared(arch, timing: str) -> tuple[dict, dict, dict]:
    """What design points that differ only in on-chip capacities, energy table and area share in this process:
    (kernels' simulated cycles alone, build_program's tile commands, kernels' cycles, action counts and DRAM bytes
    alone: kernel_evaluator's `alone`). None of them depends on those, but the action counts on whether idle PEs
    are charged (energy.charge_idle_pes, part of the key)."""
    key = (timing, arch.energy.charge_idle_pes,
           repr(dataclasses.replace(without_capacities(arch), name="", description="", energy=None, area=None)))
    entry = _SHARED.pop(key, None)
    if entry is None:
        entry = ({}, {}, {})
        while len(_SHARED) >= _KEEP_ARCHS:
            del _SHARED[next(iter(_SHARED))]         # the least recently used arch
    _SHARED[key] = entry
    return entry


def _evaluator(arch, timing: str, objective: str, seen: dict, memo: dict, alone: dict):
    """sim.kernel_evaluator, remembered across design points in `seen`. A kernel simulated alone (its mapping and
    the operands kept on chip for it given) takes the same cycles whatever the on-chip capacities, energy table or
    area, so under the latency objective points that differ only in those share one evaluation per (kernel,
    mapping, residency, weights in flash); energy and EDP depend on capacities (SRAM energy per byte, leakage by
    area), so they are priced at each point, from the cycles and action counts the points share in `alone` (and
    tile commands, through `memo`)."""
    evaluate = kernel_evaluator(arch, timing, objective, memo=memo, alone=alone)
    if objective != "latency":
        return evaluate

    def remembered(kernel) -> float:
        k = (kernel.work, _canonical(kernel), kernel.split, kernel.epilogue, kernel.residency,
             flash_share(kernel, arch, 0.0))
        if k not in seen:
            seen[k] = evaluate(kernel)
        return seen[k]
    remembered.objective = objective                 # its value is cycles: the fusion guard times schedules by it
    remembered.measure = lambda kernel: evaluate.measure(kernel, remembered(kernel))   # the latency tie-break
    remembered.dram_bytes = evaluate.dram_bytes
    return remembered


def _canonical(kernel):
    """The kernel's mapping with its loop order normalised: loops of one trip first (in m, n, k order), then the
    others in their order. Orders that differ only in where single-trip loops sit visit the tiles in the same
    sequence, so they simulate identically (a kernel split among cores keeps its order: its shares' trips differ)."""
    m = kernel.mapping
    if kernel.split or not isinstance(kernel.work, Contraction) or m.hold:   # held: the middle loop says what
        return m                                                            # (vector, attention kernels: as is)
    trips = trip_counts(kernel.work, m)
    order = "".join(d for d in "mnk" if trips[d] == 1) + "".join(d for d in m.order if trips[d] > 1)
    return dataclasses.replace(m, order=order) if order != m.order else m


def llm_point(spec: SweepSpec, point: dict[str, str]):
    """(arch, the `tilesim run` JSON mapping) of one design point of a decoder LLM sweep, run as `tilesim run`
    runs it (studies/runs.py); the graphs of each phase and size are built once per process."""
    arch = point_arch(spec, point)
    spec = point_spec(spec, point)
    result = run_decoder(spec.decoder, arch, spec.workload, spec.llm, spec.options, _GRAPHS)
    return arch, llm_dict(result)


def run_point(spec: SweepSpec, point: dict[str, str]) -> dict[str, str]:
    """One CSV row (all cells text): the point, its status and metrics; bad input becomes status=invalid. A point's
    schedules are not kept on disk (schedule_store.py): each point is lowered once, and --resume keeps its row."""
    with schedule_store.off():
        return _row(spec, point)


def _row(spec: SweepSpec, point: dict[str, str]) -> dict[str, str]:
    """run_point's row."""
    if not isinstance(spec, SweepSpec):     # another kind of sweep (studies/system_sweep.py) makes its own rows
        return spec.row(point)
    row = dict(status="ok", arch=spec.arch, setup=spec.setup, reason="", **settings(spec))
    try:
        one = point_spec(spec, point)
        row.update(settings(one))
        if one.is_llm:
            arch, report = llm_point(one, point)
            row.update(llm_metrics(report, arch))
        else:
            arch, result = simulate_point(one, point)
            row.update(metrics(result, arch))
    except InputError as e:
        row.update(status="invalid", reason=_one_line(str(e)))
    except Exception as e:  # a bug must not lose the sweep: the row says so and --resume retries it
        row.update(status="error", reason=_one_line(f"internal error: {type(e).__name__}: {e}"))
    row.update(point)                            # grid values as given (a resumed sweep finds its rows by them)
    return {c: _cell(row.get(c)) for c in columns(list(point), spec.has_llm_columns)}


def settings(spec: SweepSpec) -> dict:
    """The setting columns of a point's spec (decoder LLMs add phase, batch, prompt and generated tokens)."""
    out = {"workload": spec.workload.workload, "fusion": spec.options.fusion, "mapper": spec.options.mapper,
           "objective": spec.options.objective}
    if spec.is_llm:
        phase = spec.llm.run_phase
        out.update(phase=phase, batch=spec.workload.batch,
                   prompt_len=spec.llm.prompt_tokens(spec.workload.seq_len, DEFAULT_SEQ_LEN),
                   gen_tokens=spec.llm.gen_tokens if phase == "generate" else 0)
    return out


def _one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces."""
    return " ".join(text.split())


def run_chunk(spec: SweepSpec, chunk: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """run_point over (index, point) pairs: the unit of work sent to a worker process or a Dask worker."""
    warm_up()
    return [(i, run_point(spec, p)) for i, p in chunk]


_WARM = False


def warm_up() -> None:
    """Load (or compile) numba's kernels once per process with two tiny runs, so no point pays for it (a tiny run
    alone would be simulated in Python: use_compiled_kernels), and keep the mapping search's rankings for the
    points that share them."""
    global _WARM
    if _WARM:
        return
    use_compiled_kernels()
    keep_rankings(SWEEP_RANKINGS_BYTES)
    arch = load_arch("edge-npu")
    for gemm in ("gemm:8,8,8", "gemm:8,8,16"):   # the second builds its tile commands compiled (contraction_runs)
        simulate(lower(load_workload(gemm, dtype=arch.array.dtype), arch), arch)
    _WARM = True


# ---------------------------------------------------------------- the CSV files

def partial_path(out_path: str | Path) -> Path:
    """Where rows are appended while the sweep runs."""
    return Path(f"{out_path}.partial")


def csv_line(values) -> str:
    """One CSV line (with its newline)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _complete_lines(path: Path) -> str:
    """A file's text without a last line that a crash cut short (no newline)."""
    text = path.read_text()
    return text if text.endswith("\n") else text[:text.rfind("\n") + 1]


def read_done(out_path: str | Path, spec: SweepSpec, keys: list[str]) -> tuple[dict[tuple, dict], int]:
    """Rows of a previous run that --resume can keep, by grid values; and how many rows had another setup."""
    cols, setup = header_of(spec, keys), spec.setup
    done, other = {}, 0
    for path in (Path(out_path), partial_path(out_path)):
        if not path.is_file():
            continue
        reader = csv.DictReader(io.StringIO(_complete_lines(path)))
        if not reader.fieldnames or not set(cols) <= set(reader.fieldnames):
            other += sum(1 for _ in reader)
            continue
        for row in reader:
            if row.get("setup") != setup:
                other += 1
            elif row.get("status") in ("ok", "invalid") and None not in row and None not in row.values():
                done[tuple(row[k] for k in keys)] = {c: row[c] for c in cols}
    return done, other


def write_csv_atomic(path: str | Path, header: list[str], rows: list[dict]) -> None:
    """Header and rows to a temporary file in the same folder, then renamed onto `path`."""
    write_atomic(path, csv_line(header) + "".join(csv_line([r[c] for c in header]) for r in rows))


# ---------------------------------------------------------------- progress

class Progress:
    """A tqdm bar when tqdm is installed (tilesim[sweep]), else a plain line on stderr; both show rate and ETA."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, stream=None):
        self.total, self.done, self.enabled = total, initial, enabled
        self.stream = stream or sys.stderr
        self.start = self.last = time.perf_counter()
        self.fresh = 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm  # noqa: PLC0415 (optional dependency)
                self.bar = tqdm(total=total, initial=initial, unit="pt", desc="sweep", file=self.stream,
                                smoothing=0.1, mininterval=0.5, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, n: int = 1) -> None:
        """Count n finished points."""
        self.done += n
        self.fresh += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.last >= (0.5 if self._tty() else 10.0):
            self._line()

    def _tty(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def _line(self, end: str = "") -> None:
        """'sweep: 120/1000 points, 35.2 pt/s, ETA 25 s' (rewritten in place on a terminal)."""
        self.last = time.perf_counter()
        rate = self.fresh / max(self.last - self.start, 1e-9)
        eta = f"ETA {(self.total - self.done) / rate:.0f} s" if rate > 0 else "ETA ?"
        text = f"sweep: {self.done}/{self.total} points, {rate:.1f} pt/s, {eta}"
        self.stream.write(f"\r{text}{end}" if self._tty() else f"{text}\n")
        self.stream.flush()

    def close(self) -> None:
        """Finish the bar or print the last line."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            self._line("\n")


# ---------------------------------------------------------------- running the points

def chunks(todo: list[tuple[int, dict]], jobs: int) -> list[list[tuple[int, dict]]]:
    """Work split into chunks for the workers. Points that differ only in on-chip capacities (same array and
    everything else) go to one chunk, so a worker ranks their candidate tilings once (compiler/mapper.py) and
    shares the simulator's kernel evaluations and tile commands among them (_shared); when there are fewer
    such groups than 4 per worker, groups are cut so every worker gets some. Small groups are packed up to about
    20 chunks per worker (at most 8 points each)."""
    size = max(1, min(8, len(todo) // (jobs * 20)))
    groups: dict[tuple, list] = {}
    for item in todo:
        groups.setdefault(_shape_key(item[1]), []).append(item)
    limit = -(-len(todo) // (jobs * 4)) if len(groups) < jobs * 4 else len(todo)
    out: list[list[tuple[int, dict]]] = []
    for group in groups.values():
        step = -(-len(group) // -(-len(group) // max(limit, 1)))
        for piece in (group[i:i + step] for i in range(0, len(group), step)):
            if out and len(out[-1]) < size:
                out[-1] += piece
            else:
                out.append(list(piece))
    return out


def _shape_key(point: dict[str, str]) -> tuple:
    """A point's grid values other than on-chip capacities (what the mapping search's candidate scores and the
    simulator's kernel evaluations depend on)."""
    return tuple((k, v) for k, v in point.items() if not k.endswith((".capacity_bytes", ".resident_fraction")))


class Running:
    """(index, row) pairs as they finish, and close(), which stops the workers at once (safe to call twice)."""

    def __init__(self, rows, stop=None):
        self.rows, self.stop = rows, stop

    def __iter__(self):
        return iter(self.rows)

    def close(self) -> None:
        """Stop producing rows and release the workers."""
        if hasattr(self.rows, "close"):
            self.rows.close()
        if self.stop is not None:
            self.stop()


def _serial(spec: SweepSpec, todo: list[tuple[int, dict]]):
    """Rows in this process, in order."""
    warm_up()
    for i, point in todo:
        yield i, run_point(spec, point)


def _worker_init(parent: int) -> None:
    """Worker initializer: Ctrl-C is the parent's to handle (it keeps the finished rows), and the worker ends with
    its parent, however the parent ends (SIGKILL included): Linux kills it through PR_SET_PDEATHSIG; elsewhere a
    watchdog thread sees the parent gone (the worker is re-parented) within a second."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)     # not the parent's handler (cleanups are the parent's)
    _die_with_parent()
    if os.getppid() != parent:                        # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watchdog").start()


PR_SET_PDEATHSIG = 1            # linux/prctl.h


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGKILL when its parent ends (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass                                          # the watchdog still ends the worker


def _watch_parent(parent: int, period_s: float = 1.0) -> None:
    """End this process as soon as its parent is gone."""
    while os.getppid() == parent:
        time.sleep(period_s)
    os._exit(1)


def _end_with(parent: int, period_s: float = 0.5) -> None:
    """Run in each worker of a Dask cluster this sweep started (client.run): a watchdog thread ends the worker as
    soon as the sweep's process `parent` is gone, however it ended (SIGKILL included), or the worker's own parent
    (its nanny) is. No PR_SET_PDEATHSIG here: Dask starts workers from a helper thread, whose end would kill them."""
    threading.Thread(target=_watch_process, args=(parent, os.getppid(), period_s), daemon=True,
                     name="sweep-watchdog").start()


def _watch_process(parent: int, ppid: int, period_s: float) -> None:
    """End this process once `parent` has ended (or is a zombie) or this process was re-parented from `ppid`."""
    while os.getppid() == ppid and _running(parent):
        time.sleep(period_s)
    os._exit(1)


def _running(pid: int) -> bool:
    """Whether process `pid` exists and has not ended (a zombie, ended but not yet reaped, has: Linux /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True                                   # no /proc: os.kill said it exists


class HeldSignals:
    """Ctrl-C and SIGTERM held while a process pool runs: the handler only notes the signal, and `check` delivers it
    at a point where this process holds none of the pool's locks. Raised anywhere (inside `wait` or `submit`, while
    a future's condition is held), KeyboardInterrupt could leave a lock the pool's manager thread needs, and the
    interpreter's exit, which joins that thread, then hung (issue 21 item 7: seen under load). Only the main
    thread can set handlers; elsewhere nothing is held."""
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.caught: int | None = None
        self.previous: dict[int, typing.Any] = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._note) for s in self.SIGNALS}

    def _note(self, signum: int, _frame: object) -> None:
        self.caught = self.caught or signum

    def release(self) -> None:
        """Give the signals back their handlers (safe to call twice)."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def check(self) -> None:
        """Deliver a signal that came while held: its own handler runs now (Ctrl-C raises KeyboardInterrupt)."""
        if self.caught is not None:
            signum, self.caught = self.caught, None
            self.release()
            signal.raise_signal(signum)


def _process(spec: SweepSpec, todo: list[tuple[int, dict]], jobs: int) -> Running:
    """Rows from a pool of `jobs` local processes. The pool is forked here, before any progress thread exists,
    from a process whose numba kernels are loaded, so the workers inherit them. Signals are held from before the
    pool starts until its workers are stopped (HeldSignals)."""
    warm_up()
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    held, pool = HeldSignals(), None
    try:
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                   initargs=(os.getpid(),))
        queue = iter(chunks(todo, jobs))
        pending = {pool.submit(run_chunk, spec, chunk) for chunk in itertools.islice(queue, jobs * 4)}
    except BaseException:
        _stop_pool(pool, held) if pool is not None else held.release()
        raise
    return Running(_drain(pool, held, spec, queue, pending, jobs * 4), lambda: _stop_pool(pool, held))


def _drain(pool: ProcessPoolExecutor, held: HeldSignals, spec: SweepSpec, queue, pending: set, window: int,
           poll_s: float = 0.2):
    """Yield rows as chunks finish, keeping at most `window` chunks in flight; a held signal is delivered between
    waits (every `poll_s` seconds at most)."""
    while pending:
        held.check()
        finished, pending = wait(pending, timeout=poll_s, return_when=FIRST_COMPLETED)
        held.check()
        pending |= {pool.submit(run_chunk, spec, chunk) for chunk in itertools.islice(queue, window - len(pending))}
        for future in finished:
            yield from future.result()
    pool.shutdown()
    held.release()
    held.check()


def _stop_pool(pool: ProcessPoolExecutor, held: HeldSignals) -> None:
    """Terminate the workers without waiting for the chunks they are running (after shutdown: nothing to do), then
    give the signals back their handlers."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    held.release()


def require_dask() -> None:
    """One-line InputError when dask.distributed (tilesim[dask]) is missing."""
    try:
        import dask.distributed  # noqa: F401, PLC0415 (optional dependency)
    except ImportError:
        raise OptionError("backend", "dask.distributed is not installed; pip install 'tilesim[dask]'",
                          detail="dask") from None


def dask_client(jobs: int, scheduler, timeout: float = 10):
    """(client, cluster or None): `scheduler` is an address, a distributed.Client, or None for a LocalCluster."""
    require_dask()
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415 (optional dependency)
    if scheduler is None:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.CRITICAL)
        return Client(cluster), cluster
    if not isinstance(scheduler, str):
        return scheduler, None
    try:
        return Client(scheduler, timeout=timeout), None
    except (OSError, TimeoutError) as e:
        raise OptionError("scheduler", f"cannot connect ({_one_line(str(e))})", detail=scheduler) from None


def _dask(spec: SweepSpec, todo: list[tuple[int, dict]], jobs: int, scheduler) -> Running:
    """Rows from a Dask cluster; a client or cluster made here is closed with the Running."""
    from dask.distributed import as_completed  # noqa: PLC0415 (optional dependency)
    client, cluster = dask_client(jobs, scheduler)
    owned = [x for x in (client, cluster) if x is not None and x is not scheduler]
    stop = lambda: [x.close() for x in owned]     # noqa: E731
    try:
        if cluster is not None:                        # our own workers end with this process (not a user's)
            client.run(_end_with, os.getpid())
        shared = client.scatter(spec, broadcast=True)
        futures = [client.submit(run_chunk, shared, chunk, pure=False) for chunk in chunks(todo, jobs)]
    except BaseException:
        stop()
        raise
    return Running((row for future in as_completed(futures) for row in future.result()), stop)


def _rows(spec, todo, jobs, backend, scheduler) -> Running:
    """The chosen backend, started: its rows arrive as they finish."""
    if backend not in BACKENDS:
        raise OptionError("backend", f"got '{backend}', allowed: {', '.join(BACKENDS)}")
    if backend == "dask" and todo:
        return _dask(spec, todo, jobs, scheduler)
    if backend == "serial" or jobs == 1 or len(todo) <= 1:
        return Running(_serial(spec, todo))
    return _process(spec, todo, jobs)


def lock_path(out_path: str | Path) -> Path:
    """The lock file a running sweep holds beside its output."""
    return Path(f"{out_path}.lock")


@contextlib.contextmanager
def output_lock(out_path: str | Path):
    """Hold `<out>.lock` (an fcntl lock) while a sweep writes `out_path` and its `.partial` file: a second sweep on
    the same output is refused with one line instead of both overwriting each other's rows. The lock file holds
    the owner's process id and is removed on exit (only by its holder, after checking that the path still names
    the locked file, so a sweep never holds a lock on a file another has unlinked)."""
    if fcntl is None:                                  # no fcntl (Windows): no lock
        yield
        return
    path = lock_path(out_path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OptionError("output", f"cannot write '{out_path}': {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OptionError("output", f"'{out_path}' is being written by another sweep (process {owner}, lock "
                                        f"{path.name}); wait for it to finish or give another {{output}}") from None
        except OSError:                                # a file system without locks: run unlocked
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            yield
            return
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)                                   # unlinked by its previous holder meanwhile: lock anew
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def run_sweep(points: list[dict[str, str]], spec: SweepSpec, out_path: str | Path, *, jobs: int = 1,
              backend: str = "process", scheduler=None, resume: bool = False, progress: bool = True) -> list[dict]:
    """Run every point and write `out_path` (rows in point order), holding its lock (output_lock); returns the
    rows. See the module docstring."""
    at_least("jobs", jobs, 1)
    with output_lock(out_path):
        return _run_locked(points, spec, out_path, jobs, backend, scheduler, resume, progress)


def _run_locked(points, spec: SweepSpec, out_path, jobs: int, backend: str, scheduler, resume: bool,
                progress: bool) -> list[dict]:
    """run_sweep with the output's lock held."""
    keys = list(points[0]) if points else []
    header = header_of(spec, keys)
    done, other = read_done(out_path, spec, keys) if resume else ({}, 0)
    if other:
        print(f"sweep: --resume: {other} rows of {out_path} were made with other settings (grid, arch, workload "
              "or options); they are not reused", file=sys.stderr)
    rows: list[dict | None] = [done.get(tuple(p[k] for k in keys)) for p in points]
    todo = [(i, p) for i, p in enumerate(points) if rows[i] is None]
    partial = partial_path(out_path)
    if partial.exists() and not resume:
        print(f"sweep: {partial} (an interrupted sweep) is replaced; --resume would have kept its rows",
              file=sys.stderr)
    finished = _rows(spec, todo, jobs, backend, scheduler)     # workers start before the progress bar's thread
    try:
        write_csv_atomic(partial, header, [r for r in rows if r is not None])
        bar = Progress(len(points), len(points) - len(todo), progress)
        with open(partial, "a", newline="") as f:
            try:
                for i, row in finished:
                    rows[i] = row
                    f.write(csv_line([row[c] for c in header]))
                    f.flush()
                    bar.update()
            finally:
                bar.close()
    except KeyboardInterrupt:
        print(f"sweep: interrupted; {sum(r is not None for r in rows)} of {len(points)} points are saved in "
              f"{partial}: rerun with --resume to finish", file=sys.stderr)
        raise
    finally:
        finished.close()
    write_csv_atomic(out_path, header, rows)
    partial.unlink()
    return rows


# ---------------------------------------------------------------- summary

def best_rows(rows: list[dict]) -> dict[str, dict]:
    """The ok row with the lowest latency, energy and EDP."""
    ok = [r for r in rows if r["status"] == "ok"]
    return {m: min(ok, key=lambda r: float(r[m])) for m in ("latency_s", "energy_pj", "edp")} if ok else {}


PARETO_METRICS = ("latency_s", "energy_pj", "area_mm2")          # the default front: time, energy and silicon
METRIC_ALIASES = {"latency": "latency_s", "energy": "energy_pj", "area": "area_mm2"}


def parse_pareto_metrics(text: str | None, allowed: tuple[str, ...] = METRICS) -> tuple[str, ...]:
    """'latency,energy,area' -> ('latency_s', 'energy_pj', 'area_mm2'); at least two distinct metrics of `allowed`
    (short names latency, energy and area allowed); None gives PARETO_METRICS."""
    if text is None:
        return PARETO_METRICS
    names = tuple(METRIC_ALIASES.get(n.strip(), n.strip()) for n in text.split(","))
    for n in names:
        if n not in allowed:
            raise OptionError("pareto_metrics", f"got '{n}'{did_you_mean(n, [*METRIC_ALIASES, *allowed])}; allowed: "
                                                f"latency, energy, area or a column: {', '.join(allowed)}")
    if len(names) < 2 or len(set(names)) < len(names):
        raise OptionError("pareto_metrics", f"give two or more different metrics, e.g. latency,energy,area; got "
                                            f"'{text}'")
    return names


def front_metrics(rows: list[dict], metrics: tuple[str, ...] = PARETO_METRICS) -> tuple[str, ...]:
    """The metrics a front can use: those with a number in every ok row (no area model: no area_mm2)."""
    ok = [r for r in rows if r["status"] == "ok"]
    return tuple(m for m in metrics if ok and all(r.get(m) not in (None, "") for r in ok))


def pareto_front(rows: list[dict], metrics: tuple[str, ...] = PARETO_METRICS) -> list[int]:
    """Indices of the ok rows that no other ok row dominates over `metrics` (at least as good in each, better in
    one; lower is better except HIGHER_IS_BETTER), by increasing first metric; of identical rows the first is
    kept. Metrics some ok row lacks are left out (front_metrics)."""
    used = front_metrics(rows, metrics)
    ok = [i for i, r in enumerate(rows) if r["status"] == "ok"]
    if not ok or not used:
        return []
    sign = [-1.0 if m in HIGHER_IS_BETTER else 1.0 for m in used]
    v = {i: tuple(s * float(rows[i][m]) for s, m in zip(sign, used, strict=True)) for i in ok}
    # In lexicographic order a point's dominators (and its earlier twins) come before it, and whatever dominates a
    # point is on the front or dominated by a point that is: so each point is checked against the front so far.
    front: list[int] = []
    for i in sorted(ok, key=lambda i: (*v[i], i)):
        if not any(all(f <= x for f, x in zip(v[j], v[i], strict=True)) for j in front):
            front.append(i)
    return front


def best_under_area(rows: list[dict], budget_mm2: float, metric: str = "energy_pj") -> dict | None:
    """The ok row with the best `metric` among those of at most `budget_mm2` of silicon (None: none fits)."""
    fits = [r for r in rows if r["status"] == "ok" and r.get("area_mm2") not in (None, "")
            and float(r["area_mm2"]) <= budget_mm2]
    pick = max if metric in HIGHER_IS_BETTER else min
    return pick(fits, key=lambda r: float(r[metric])) if fits else None


def best_perf_per_mm2(rows: list[dict]) -> dict | None:
    """The ok row with the most MAC/s per mm² (None: no area model)."""
    rated = [r for r in rows if r["status"] == "ok" and r.get("perf_per_mm2") not in (None, "")]
    return max(rated, key=lambda r: float(r["perf_per_mm2"])) if rated else None


__all__ = [
    "METRICS",
    "PARETO_METRICS",
    "SweepSpec",
    "best_rows",
    "best_under_area",
    "columns",
    "grid_points",
    "pareto_front",
    "random_points",
    "run_point",
    "run_sweep",
]
