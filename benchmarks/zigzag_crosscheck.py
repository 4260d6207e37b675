"""Cross-check tilesim against ZigZag 3.9.1 on ResNet-18 and its `tpu_like` accelerator, layer by layer (run by hand).

    python benchmarks/zigzag_crosscheck.py --workdir /tmp/zz_xcheck          # both objectives, 2-6 min each
    python benchmarks/zigzag_crosscheck.py --objectives latency --venv /tmp/zzvenv

ZigZag runs in its own virtualenv (zigzag-dse==3.9.1, created in a temporary folder unless --venv names one), one
subprocess per objective. The driver calls zigzag.api.get_hardware_performance_zigzag with the ResNet-18 ONNX,
hardware and mapping files bundled in the wheel (zigzag/inputs/{workload/resnet18.onnx, hardware/tpu_like.yaml,
mapping/tpu_like.yaml}), LOMA temporal mapping search, and reads every layer's cost model evaluation from the
pickle ZigZag writes: total energy, MAC energy, energy per operand per memory level, memory accesses per operand
per level, and latency (latency_total2: ideal temporal cycles + stalls + on/off-loading + systolic drain).
ZigZag's `opt=latency` is its default and gives the numbers ZigZag quotes for this case (1.87e9 pJ, 3.87 M
cycles); `opt=energy` is also run. With --workdir, each objective's ZigZag records are cached there.

tilesim reads the very same ONNX file (its importer needs only the shapes; the weights are external data that the
wheel does not ship) and benchmarks/data/zigzag_tpu_like.yaml, the tpu_like numbers copied into a tilesim arch.
It runs with --fusion none, since ZigZag has no fusion, and with the mapping search minimising the same objective
as ZigZag's run. ZigZag costs only Conv/Gemm/MatMul nodes (Relu, Add, MaxPool and GlobalAveragePool are dummy
nodes of zero cost), so the per-layer table and the "like for like" totals cover tilesim's 21 array kernels only;
tilesim's vector kernels (and the whole network) are listed separately. tilesim's cycles per layer are the
kernel simulated alone (as ZigZag evaluates each layer alone: load, compute, store), so overlap between layers,
which ZigZag does not model, does not blur the comparison.

DRAM bytes: ZigZag counts accesses of its DRAM port (64 bits); bytes = accesses x 8. It also reports the exact
data moved (elements x precision); the script checks the two agree and says so if they do not.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tilesim.arch.config import DTYPE_BYTES  # noqa: E402
from tilesim.arch.loader import load_arch  # noqa: E402
from tilesim.compiler.schedule import CompileOptions, Schedule, lower  # noqa: E402
from tilesim.core.simulate import kernel_evaluator, simulate  # noqa: E402
from tilesim.workloads import load_workload  # noqa: E402

ARCH = ROOT / "benchmarks" / "data" / "zigzag_tpu_like.yaml"
ZIGZAG = "zigzag-dse==3.9.1"

# Runs inside ZigZag's venv: argv = objective, dump folder. Prints one JSON line: the input files and per layer
# records. ZigZag logs at INFO level to stderr; the caller keeps that in a log file.
DRIVER = r"""
import json, os, pickle, sys
import zigzag
from zigzag.api import get_hardware_performance_zigzag
from zigzag.hardware.architecture.memory_port import DataDirection as D
from zigzag.mapping.data_movement import DataMoveAttr

opt, dump = sys.argv[1], sys.argv[2]
base = os.path.join(os.path.dirname(zigzag.__file__), "inputs")
files = dict(workload=os.path.join(base, "workload", "resnet18.onnx"),
             accelerator=os.path.join(base, "hardware", "tpu_like.yaml"),
             mapping=os.path.join(base, "mapping", "tpu_like.yaml"))
pkl = os.path.join(dump, "list_of_cmes.pickle")
energy, latency, _ = get_hardware_performance_zigzag(
    workload=files["workload"], accelerator=files["accelerator"], mapping=files["mapping"], opt=opt,
    dump_folder=dump, pickle_filename=pkl, loma_show_progress_bar=False)
layers = []
for c in pickle.load(open(pkl, "rb")):
    ops = {}
    for op in c.layer.layer_operands:
        mem_op = c.layer.memory_operand_links.layer_to_mem_op(op)
        levels = c.accelerator.memory_hierarchy.get_memory_levels(mem_op=mem_op)
        acc = c.memory_word_access[op]
        top = len(acc) - 1
        move = c.mapping.unit_mem_data_movement[op][top]
        amt, prec, cnt = (move.get_attribute(a) for a in (DataMoveAttr.DATA_TRANS_AMOUNT_PER_PERIOD,
                          DataMoveAttr.DATA_PRECISION, DataMoveAttr.DATA_TRANS_PERIOD_COUNT))
        units = c.mapping.spatial_mapping.unit_count[op][top + 1]
        ops[str(op)] = dict(
            levels=[lv.name for lv in levels[:len(acc)]],
            energy=[float(e) for e in c.mem_energy_breakdown[op]],
            accesses=[{d.value: int(a.get(d)) for d in D} for a in acc],
            top_exact_bytes={d.value: amt.get(d) * prec.get(d) * cnt.get(d) * units / 8 for d in D})
    layers.append(dict(name=c.layer.name, macs=int(c.layer.total_mac_count), energy=float(c.energy_total),
                       mac_energy=float(c.mac_energy), latency=float(c.latency_total2), ideal=float(c.ideal_cycle),
                       ideal_temporal=float(c.ideal_temporal_cycle), stall=float(c.stall_slack_comb),
                       onload=float(c.data_onloading_cycle), offload=float(c.data_offloading_cycle),
                       drain=float(c.systolic_drain_cycle), temporal=str(c.temporal_mapping),
                       spatial=str(c.layer.spatial_mapping), ops=ops))
print(json.dumps(dict(files=files, energy=float(energy), latency=float(latency), layers=layers)))
"""

# DRAM word of ZigZag's tpu_like: the port moves 64 bits per access.
DRAM_WORD_BYTES = 8
# ZigZag operand names: I (input, memory operand I1), W (weight, I2), O (output).
GROUPS = ("mac", "weight reg", "psum reg/hops", "sram", "dram", "vector")


def make_venv(path: Path) -> Path:
    """A virtualenv with zigzag-dse 3.9.1 at `path` (reused if it already imports zigzag); returns its python."""
    py = path / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    probe = subprocess.run([str(py), "-c", "import zigzag.api, importlib.metadata as m; "
                            "assert m.version('zigzag-dse') == '3.9.1'"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", ZIGZAG, "six"], check=True)
    return py


def run_zigzag(py: Path, work: Path, opt: str) -> tuple[dict, float, bool]:
    """Run (or reuse from `work`) ZigZag with objective `opt`; its records, wall seconds and whether cached."""
    done = work / f"zigzag_{opt}.json"
    if done.exists():
        d = json.loads(done.read_text())
        return d["result"], d["wall_s"], True
    dump = work / f"zigzag_{opt}"
    dump.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(work / f"zigzag_{opt}.log", "w") as log:
        proc = subprocess.run([str(py), "-c", DRIVER, opt, str(dump)], check=True, text=True, stdout=subprocess.PIPE,
                              stderr=log, env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                                                   MKL_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    done.write_text(json.dumps({"result": result, "wall_s": wall}))
    return result, wall, False


def zigzag_layer(rec: dict) -> dict:
    """One ZigZag layer in the comparison's terms: DRAM bytes per operand and energy per group."""
    ops = rec["ops"]
    dram = {op: ops[op]["accesses"][-1] for op in ("I", "W", "O")}
    exact = {op: ops[op]["top_exact_bytes"] for op in ("I", "W", "O")}
    words = {"input": dram["I"]["rd_out_to_low"], "weight": dram["W"]["rd_out_to_low"],
                 "output": dram["O"]["wr_in_by_low"], "psum": dram["O"]["rd_out_to_low"]}
    exact_b = {"input": exact["I"]["rd_out_to_low"], "weight": exact["W"]["rd_out_to_low"],
                   "output": exact["O"]["wr_in_by_low"], "psum": exact["O"]["rd_out_to_low"]}
    groups = dict.fromkeys(GROUPS, 0.0)
    groups["mac"] = rec["mac_energy"]
    for _op, o in ops.items():
        for lv, e in zip(o["levels"], o["energy"], strict=False):
            key = {"rf_128B": "weight reg", "rf_2B": "psum reg/hops", "sram_2MB": "sram", "dram": "dram"}[lv]
            groups[key] += e
    return {"name": rec["name"], "macs": rec["macs"], "energy": rec["energy"], "cycles": rec["latency"],
                "dram": {k: v * DRAM_WORD_BYTES for k, v in words.items()}, "dram_exact": exact_b, "groups": groups,
                "temporal": rec["temporal"], "ideal_temporal": rec["ideal_temporal"], "onload": rec["onload"],
                "offload": rec["offload"], "stall": rec["stall"]}


def tilesim_group(component: str) -> str:
    """tilesim energy component -> comparison group (array = per-MAC register reads and PE-to-PE hops)."""
    return {"mac": "mac", "weight_rf": "weight reg", "array": "weight reg", "sram": "sram", "dram": "dram",
            "vector": "vector"}.get(component, component)


def run_tilesim(onnx: str, objective: str) -> tuple[list[dict], list[dict], object, float]:
    """Simulate the ONNX on the tpu_like arch, unfused; (array kernel records, vector kernel records, result, wall)."""
    t0 = time.perf_counter()
    arch = load_arch(str(ARCH))
    graph = load_workload(onnx, dtype=arch.array.dtype)
    opts = CompileOptions(fusion="none", objective=objective)
    timing = opts.resolved_timing(arch)
    schedule = lower(graph, arch, opts, kernel_evaluator(arch, timing, objective))
    result = simulate(schedule, arch)
    wall = time.perf_counter() - t0
    array, vector = [], []
    for kernel, kr in zip(schedule.kernels, result.kernels, strict=False):
        alone = simulate(Schedule("alone", arch.name, timing, (replace(kernel, deps=()),)), arch)
        groups = dict.fromkeys(GROUPS, 0.0)
        for comp, pj in alone.energy_breakdown_pj.items():
            groups[tilesim_group(comp)] += pj
        macs = kr.macs
        if kernel.on_array:
            # split the array component: weight register reads (reg_byte) stay with "weight reg", hops move out
            hop = arch.energy.actions["array.hop_byte"].pj
            # WS: each MAC passes its input and its partial sum to the next PE
            hops = macs * (DTYPE_BYTES[arch.array.dtype] + DTYPE_BYTES[arch.array.acc_dtype]) * hop
            groups["weight reg"] -= hops
            groups["psum reg/hops"] += hops
        rec = {"name": kr.name, "macs": macs, "energy": alone.energy_pj, "cycles": alone.cycles, "span": kr.cycles,
                   "compute": kr.compute_cycles,
                   "dram": {"input": kr.dram_input_read_bytes, "weight": kr.dram_weight_read_bytes,
                             "output": kr.dram_output_write_bytes,
                             "psum": kr.dram_read_bytes - kr.dram_input_read_bytes - kr.dram_weight_read_bytes},
                   "groups": groups, "mapping": kr.mapping}
        (array if kernel.on_array else vector).append(rec)
    return array, vector, result, wall


def short(name: str) -> str:
    """'/layer2/layer2.0/downsample/downsample.0/Conv' -> 'layer2.0.downsample'; '/conv1/Conv' -> 'conv1'."""
    parts = name.strip("/").split("/")[:-1]
    parts = parts[1:] if len(parts) > 1 else parts
    return ".".join(p for p in parts if not p.startswith("downsample."))


def pct(ours: float, theirs: float) -> str:
    """Relative difference of tilesim against ZigZag, in %, or '-' when ZigZag's value is 0."""
    return f"{100 * (ours / theirs - 1):+.1f}" if theirs else ("0" if not ours else "-")


def dram_total(d: dict) -> float:
    return d["input"] + d["weight"] + d["output"] + d["psum"]


def print_tables(opt: str, zz: list[dict], ts: list[dict]) -> dict:
    """Per-layer table (energy, cycles, DRAM bytes per operand), totals, and the energy split by group."""
    print(f"\n== objective {opt}: ZigZag LOMA opt={opt} vs tilesim --objective {opt} --fusion none")
    print(f"{'layer':<26}{'MACs':>11}{'ZZ µJ':>8}{'ts µJ':>8}{'d%':>7}{'ZZ cyc':>9}{'ts cyc':>9}{'d%':>7}"
          f"{'ZZ in':>9}{'ts in':>9}{'ZZ w':>9}{'ts w':>9}{'ZZ out':>8}{'ts out':>8}{'ZZ ps':>6}{'ts ps':>6}")
    for z, t in zip(zz, ts, strict=False):
        name = short(z["name"])
        print(f"{name[:25]:<26}{z['macs']:>11}{z['energy'] / 1e6:>8.2f}{t['energy'] / 1e6:>8.2f}"
              f"{pct(t['energy'], z['energy']):>7}{z['cycles']:>9.0f}{t['cycles']:>9}{pct(t['cycles'], z['cycles']):>7}"
              f"{z['dram']['input']:>9}{t['dram']['input']:>9}{z['dram']['weight']:>9}{t['dram']['weight']:>9}"
              f"{z['dram']['output']:>8}{t['dram']['output']:>8}{z['dram']['psum']:>6}{t['dram']['psum']:>6}")
    tot = {"zz_energy": sum(z["energy"] for z in zz), "ts_energy": sum(t["energy"] for t in ts),
               "zz_cycles": sum(z["cycles"] for z in zz), "ts_cycles": sum(t["cycles"] for t in ts),
               "zz_dram": sum(dram_total(z["dram"]) for z in zz), "ts_dram": sum(dram_total(t["dram"]) for t in ts)}
    per_op = {op: (sum(z["dram"][op] for z in zz), sum(t["dram"][op] for t in ts))
              for op in ("input", "weight", "output", "psum")}
    worst = max(abs(dram_total(t["dram"]) / dram_total(z["dram"]) - 1) for z, t in zip(zz, ts, strict=False))
    print(f"{'total':<26}{sum(z['macs'] for z in zz):>11}{tot['zz_energy'] / 1e6:>8.1f}{tot['ts_energy'] / 1e6:>8.1f}"
          f"{pct(tot['ts_energy'], tot['zz_energy']):>7}{tot['zz_cycles']:>9.0f}{tot['ts_cycles']:>9}"
          f"{pct(tot['ts_cycles'], tot['zz_cycles']):>7}"
          + "".join(f"{a:>9.0f}{b:>9}" if op in ("input", "weight") else
                    f"{a:>8.0f}{b:>8}" if op == "output" else f"{a:>6.0f}{b:>6}" for op, (a, b) in per_op.items()))
    print(f"totals: energy ZigZag {tot['zz_energy']:.4g} pJ, tilesim {tot['ts_energy']:.4g} pJ "
          f"({pct(tot['ts_energy'], tot['zz_energy'])}%); cycles ZigZag {tot['zz_cycles']:.4g}, tilesim "
          f"{tot['ts_cycles']:.4g} ({pct(tot['ts_cycles'], tot['zz_cycles'])}%); DRAM bytes ZigZag "
          f"{tot['zz_dram']:.6g}, tilesim {tot['ts_dram']:.6g} ({pct(tot['ts_dram'], tot['zz_dram'])}%), "
          f"worst layer {100 * worst:.1f}%")
    print("energy by group (µJ):   " + "  ".join(
        f"{g} {sum(z['groups'][g] for z in zz) / 1e6:.1f} / {sum(t['groups'][g] for t in ts) / 1e6:.1f}"
        for g in GROUPS if g != "vector") + "   (ZigZag / tilesim)")
    return dict(tot, per_op=per_op, worst_layer_dram=worst)


def main(argv: list[str] | None = None) -> int:
    """Run ZigZag per objective, tilesim on the same ONNX, and print the per-layer comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", default="latency,energy", help="ZigZag opt / tilesim --objective, comma-separated")
    ap.add_argument("--venv", type=Path, default=None, help="reuse (or create) ZigZag's venv here")
    ap.add_argument("--workdir", type=Path, default=None, help="keep ZigZag's outputs here and reuse finished runs")
    ap.add_argument("--json", type=Path, default=None, help="write every per-layer record here")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="zigzag_xcheck_")
    work = args.workdir or Path(tmp.name) / "work"
    work.mkdir(parents=True, exist_ok=True)
    py = make_venv(args.venv or Path(tmp.name) / "venv")
    out = {}
    for opt in args.objectives.split(","):
        result, zz_wall, cached = run_zigzag(py, work, opt)
        zz = [zigzag_layer(r) for r in result["layers"]]
        for z in zz:
            if z["dram_exact"] != {k: float(v) for k, v in z["dram"].items()}:
                print(f"note: {z['name']}: ZigZag DRAM words x 8 B {z['dram']} != exact data {z['dram_exact']}")
        run_tilesim(result["files"]["workload"], opt)        # warm numba's JIT so the timing below is steady
        ts, vec, res, ts_wall = run_tilesim(result["files"]["workload"], opt)
        by_name = {z["name"]: z for z in zz}          # ZigZag may visit layers in another topological order
        if sorted(by_name) != sorted(t["name"] for t in ts) or any(by_name[t["name"]]["macs"] != t["macs"] for t in ts):
            raise SystemExit("ZigZag's layers and tilesim's array kernels differ in names or MACs")
        zz = [by_name[t["name"]] for t in ts]
        print(f"\nZigZag opt={opt}: {result['energy']:.4g} pJ, {result['latency']:.4g} cycles "
              f"({zz_wall:.1f} s{', cached' if cached else ''}); tilesim {ts_wall:.2f} s")
        tot = print_tables(opt, zz, ts)
        vec_e = sum(v["energy"] for v in vec)
        vec_d = sum(dram_total(v["dram"]) for v in vec)
        print(f"not in ZigZag: tilesim's {len(vec)} vector kernels (Relu, Add, MaxPool, GlobalAveragePool) "
              f"{vec_e:.4g} pJ and {vec_d:.6g} DRAM bytes; whole network in tilesim (unfused): "
              f"{res.energy_pj:.4g} pJ, {res.cycles} cycles, {res.dram_read_bytes + res.dram_write_bytes} DRAM bytes")
        print("tilesim mappings: " + "; ".join(f"{short(t['name'])} {t['mapping']}" for t in ts))
        out[opt] = {"zigzag": zz, "tilesim": ts, "tilesim_vector": vec, "totals": tot, "zigzag_total": result["energy"],
                        "zigzag_latency": result["latency"], "tilesim_network": {
                            "energy": res.energy_pj, "cycles": res.cycles,
                            "dram": res.dram_read_bytes + res.dram_write_bytes}}
    if len(out) > 1:
        print("\ntotals of the 21 layers, every tilesim objective against every ZigZag objective "
              "(energy %, cycles %, DRAM bytes %):")
        for ts_opt, o in out.items():
            t = o["totals"]
            print(f"  tilesim {ts_opt:<8}" + "".join(
                f"  vs ZigZag {zz_opt}: {pct(t['ts_energy'], z['totals']['zz_energy'])}, "
                f"{pct(t['ts_cycles'], z['totals']['zz_cycles'])}, {pct(t['ts_dram'], z['totals']['zz_dram'])}"
                for zz_opt, z in out.items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
