"""Physical invariants of a run, checked over random archs (issue 21): the short profile runs in CI
(tests/test_invariants.py), the long one by hand (benchmarks/invariants.py).

Each check returns a list of violations (strings); an empty list means the case holds. Bounds:
- utilizations: PE utilization, MBU and every level's bandwidth utilization lie in [0, 1];
- cycles >= compute bound (MACs / peak MACs per cycle) and >= off-chip bound (DRAM bytes / bytes per cycle);
- DRAM reads >= compulsory reads (every parameter and graph input read once), DRAM writes >= graph outputs;
- fusion: DRAM bytes of full <= epilogue <= none;
- 2x DRAM bandwidth is never slower; 2x on-chip capacity is never slower and, under the energy objective, never
  reads more from DRAM. "Slower" is beyond the latency objective's tie band (compiler.mapper.TIE_BAND, 1%): mappings
  within 1% of the fastest are ties that go to less energy (issue 20), so more resources may trade up to 1% of
  time for energy;
- the energy breakdown sums to the total.
"""
from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass, replace

from tilesim.arch import arch_from_dict
from tilesim.compiler.mapper import TIE_BAND
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.simulate import kernel_evaluator, simulate
from tilesim.workloads import BUILTINS, DEFAULT_DTYPE, llm, load_workload

TOL = 1e-9                      # relative slack for float comparisons
SPEED_TOL = TIE_BAND            # "never slower": relative slack, the latency objective's tie band

# Workloads small enough for many random archs (name, load_workload keywords).
SMALL_WORKLOADS = (
    ("gemm:96,80,72", {}),
    ("gemm:1,256,512", {}),
    ("attention", {"seq_len": 64}),
    ("gpt2", {"seq_len": 32}),
    ("gpt2", {"phase": "decode", "context": 64}),
    ("mobilenet_v2", {}),
    ("resnet18", {}),
)

# The long profile's (benchmarks/invariants.py): the same kinds of workload, decoders cut to 2 layers.
PROFILE_WORKLOADS = (
    ("gemm:96,80,72", {}),
    ("gemm:1,256,512", {}),
    ("attention", {"seq_len": 64}),
    ("gpt2", {"seq_len": 32, "layers": 2}),
    ("gpt2", {"phase": "decode", "context": 64, "layers": 2}),
)


def random_arch_dict(rng: random.Random) -> dict:
    """An int8 arch with random array (1..512 per side, any dataflow), SRAM (1 KiB..64 MiB), bandwidths over four
    decades and 1..16 cores."""
    cores = rng.choice([1, 1, 2, 4, 16])
    sram_bytes = int(2 ** rng.uniform(10, 26))
    return {
        "name": "random", "clock_hz": 1e9, "cores": cores,
        "array": {"rows": int(2 ** rng.uniform(0, 9)), "cols": int(2 ** rng.uniform(0, 9)),
                  "dataflow": rng.choice(["ws", "os", "is"]), "dtype": "int8", "acc_dtype": "int32"},
        "vector": {"lanes": rng.choice([1, 8, 64, 256])},
        "memory": [
            {"name": "dram", "kind": "offchip", "capacity_bytes": 1 << 36,
             "bandwidth_bytes_per_cycle": 10 ** rng.uniform(-0.5, 3.5), "latency_cycles": rng.choice([0, 20, 200])},
            {"name": "sram", "kind": "sram", "capacity_bytes": sram_bytes,
             "bandwidth_bytes_per_cycle": 10 ** rng.uniform(0.5, 4.5), "double_buffered": rng.random() < 0.8,
             "shared": cores > 1 and rng.random() < 0.5, "resident_fraction": rng.choice([0.0, 0.0, 0.5])},
        ],
        "energy": {"node": "7 nm", "defaults": {"node_nm": 7, "offchip": "LPDDR4"}},
    }


def scaled(arch_dict: dict, path: tuple[str, str], factor: float) -> dict:
    """A copy with memory level `path[0]`'s field `path[1]` multiplied by `factor`."""
    d = copy.deepcopy(arch_dict)
    level = next(lv for lv in d["memory"] if lv["name"] == path[0])
    level[path[1]] = type(level[path[1]])(level[path[1]] * factor)
    return d


@dataclass(frozen=True)
class Case:
    """One arch, workload and fusion policy."""
    arch: dict
    workload: str
    options: dict
    fusion: str = "full"
    objective: str = "latency"


def run(case: Case, arch_dict: dict | None = None, fusion: str | None = None, objective: str | None = None,
        reuse: dict | None = None):
    """(graph, SimResult) of a case, optionally with another arch dict, fusion policy or objective. `reuse`: a
    dict kept across the runs of one case, holding its graph, a kernel evaluator per (arch, objective) (shared by
    the fusion policies: each kernel alone simulates once; its measurements shared by the objectives) and the tile
    commands per arch without its on-chip capacities (shared by archs that differ only in those: build_program's
    memo)."""
    reuse = {} if reuse is None else reuse
    d = arch_dict or case.arch
    arch = arch_from_dict(d)
    graph = reuse.get("graph") or reuse.setdefault("graph", workload_graph(case.workload, case.options))
    options = CompileOptions(fusion=fusion or case.fusion, objective=objective or case.objective)
    memo = reuse.setdefault(("memo", _key(d, capacities=False)), {})
    key = ("evaluate", _key(d), options.objective)
    if key not in reuse:
        evaluate = reuse[key] = kernel_evaluator(arch, options.resolved_timing(arch), options.objective, memo=memo)
        # what a kernel alone measures (cycles, pJ, DRAM bytes) does not depend on the objective
        evaluate.measured = reuse.setdefault(("measured", _key(d)), evaluate.measured)
        evaluate.moved = reuse.setdefault(("moved", _key(d)), evaluate.moved)
    return graph, simulate(lower(graph, arch, options, reuse[key]), arch, memo=memo)


def workload_graph(name: str, options: dict):
    """load_workload(name, **options); `layers` (decoder built-ins only) keeps the first that many layers: every
    kind of kernel and the layer-to-layer hand-off stay, at a fraction of the work (the long profile)."""
    options = dict(options)
    layers = options.pop("layers", None)
    if layers is None:
        return load_workload(name, **options)
    decoder = replace(BUILTINS[name].decoder, layers=layers)
    return llm.decoder_graph(decoder, dtypes=llm.resolve_dtypes(None, DEFAULT_DTYPE), **options)


def _key(arch_dict: dict, capacities: bool = True) -> str:
    """An arch dict as a string key; without `capacities`, its on-chip capacities left out."""
    d = copy.deepcopy(arch_dict)
    if not capacities:
        for level in d["memory"]:
            if level["kind"] == "sram":
                level.pop("capacity_bytes", None)
    return json.dumps(d, sort_keys=True)


def compulsory(graph) -> tuple[int, int]:
    """(bytes every run must read from DRAM: parameters and graph inputs once, a table only Gather reads only for
    the rows it gathers; bytes it must write: the graph outputs)."""
    reads = sum(graph.tensors[n].nbytes for n in graph.inputs)
    for name, t in graph.tensors.items():
        if not t.is_param:
            continue
        users = graph.consumers(name)
        gathered = users and all(op.op_type == "Gather" and op.inputs[0] == name for op in users)
        reads += sum(graph.tensors[op.outputs[0]].nbytes for op in users) if gathered else t.nbytes
    return reads, sum(graph.tensors[n].nbytes for n in graph.outputs)


def single_run_violations(graph, r) -> list[str]:
    """Bounds that hold for any one run."""
    bad = []
    for name, value in (("pe_utilization", r.pe_utilization), ("mbu", r.mbu)):
        if not -TOL <= value <= 1 + TOL:
            bad.append(f"{name} {value:.4g} outside [0, 1]")
    for level, traffic in r.memory_traffic.items():
        if traffic["bandwidth_utilization"] > 1 + TOL:
            bad.append(f"{level} bandwidth utilization {traffic['bandwidth_utilization']:.4g} > 1")
    if r.cycles * r.peak_macs_per_cycle < r.macs * (1 - TOL):
        bad.append(f"cycles {r.cycles} below the compute bound {r.macs / r.peak_macs_per_cycle:.1f}")
    offchip = (r.dram_read_bytes + r.dram_write_bytes) / r.offchip_bytes_per_cycle
    if r.cycles < offchip * (1 - TOL) - 1:
        bad.append(f"cycles {r.cycles} below the off-chip bound {offchip:.1f}")
    reads, writes = compulsory(graph)
    if r.dram_read_bytes + r.flash_read_bytes < reads:
        bad.append(f"DRAM reads {r.dram_read_bytes} below compulsory {reads}")
    if r.dram_write_bytes < writes:
        bad.append(f"DRAM writes {r.dram_write_bytes} below the graph outputs {writes}")
    total = sum(r.energy_breakdown_pj.values())
    if not math.isclose(total, r.energy_pj, rel_tol=1e-9, abs_tol=1e-6):
        bad.append(f"energy breakdown sums to {total:.6g}, total {r.energy_pj:.6g}")
    return bad


def dram_bytes(r) -> int:
    """Off-chip bytes moved."""
    return r.dram_read_bytes + r.dram_write_bytes


def violations(case: Case, within_band: list[str] | None = None) -> list[str]:
    """Every invariant of a case: one-run bounds, fusion order, and monotonicity in bandwidth and capacity.
    `within_band` collects the slowdowns that the latency tie band allows (for the long profile's table)."""
    reuse: dict = {}
    by_policy = {p: run(case, fusion=p, reuse=reuse)[1] for p in ("none", "epilogue", "full")}
    graph, base = reuse["graph"], by_policy[case.fusion]
    bad = single_run_violations(graph, base)
    if not dram_bytes(by_policy["full"]) <= dram_bytes(by_policy["epilogue"]) <= dram_bytes(by_policy["none"]):
        bad.append("fusion adds DRAM traffic: none/epilogue/full = "
                   + "/".join(str(dram_bytes(by_policy[p])) for p in ("none", "epilogue", "full")))
    fast = run(case, scaled(case.arch, ("dram", "bandwidth_bytes_per_cycle"), 2), reuse=reuse)[1]
    big_arch = scaled(case.arch, ("sram", "capacity_bytes"), 2)
    big = run(case, big_arch, reuse=reuse)[1]
    for what, more in (("2x DRAM bandwidth", fast), ("2x SRAM", big)):
        if more.cycles > base.cycles * (1 + SPEED_TOL):
            bad.append(f"{what} slower: {base.cycles} -> {more.cycles} cycles")
        elif more.cycles > base.cycles and within_band is not None:
            within_band.append(f"{what} slower within the tie band: {base.cycles} -> {more.cycles} cycles")
    small_e = run(case, objective="energy", reuse=reuse)[1]
    big_e = run(case, big_arch, objective="energy", reuse=reuse)[1]
    if dram_bytes(big_e) > dram_bytes(small_e):
        bad.append(f"2x SRAM reads more DRAM under the energy objective: {dram_bytes(small_e)} -> {dram_bytes(big_e)}")
    return bad


def cases(seed: int, count: int, workloads=SMALL_WORKLOADS) -> list[Case]:
    """`count` random cases: archs from `seed`, workloads and fusion policies in turn."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name, options = workloads[i % len(workloads)]
        out.append(Case(random_arch_dict(rng), name, options, fusion=rng.choice(["none", "epilogue", "full"])))
    return out
