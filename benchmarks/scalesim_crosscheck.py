"""Cross-check tilesim's `scalesim` timing mode against SCALE-Sim 3.0.0, layer by layer (run by hand, not a test).

    python benchmarks/scalesim_crosscheck.py --arrays 8,32 --dataflows ws --topology resnet18 --max-layers 4

SCALE-Sim runs in its own virtualenv (created in a temporary folder unless --venv names one; it needs numpy<2.4,
it crashes on current numpy), one subprocess per (topology, array, dataflow) case, in CALC bandwidth mode so that
it reports stall-free cycles. Its per-layer COMPUTE_REPORT.csv (scalesim/simulator.py, generate_reports) has the
columns: LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, Mapping Efficiency %,
Compute Util %. We compare "Total Cycles" (= compute cycles when nothing stalls) with KernelResult.compute_cycles,
"Mapping Efficiency %" with mapping_efficiency and "Overall Util %" with compute_utilization. tilesim reads the
very same .cfg and topology .csv through arch/scalesim_cfg.py and workloads/scalesim_topology.py.
With --workdir, finished SCALE-Sim cases are cached there (their report and wall time) and reused on a rerun.

--mode compute runs only SCALE-Sim's compute module (its operand matrices and systolic_compute_{ws,os,is} demand
matrices, the code that decides fold timing, mapping efficiency and compute utilization) and skips its memory
service loop, a per-cycle Python loop that takes >99% of the time (966 s vs 4.5 s for two 8x8 ResNet-18 layers).
Without stalls that loop serves demand row i at cycle i, so Total Cycles = demand rows - 1 (scalesim/memory/
double_buffered_scratchpad_mem.py: total_cycles = max(ofmap_serviced_cycles)); CALC mode never stalled in any full
run. --mode verify runs the compute-only driver on every case that has a cached full run and checks that both give
the same cycles, mapping efficiency and utilization, so the shortcut is itself tested against full SCALE-Sim.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tilesim.arch.loader import load_arch  # noqa: E402
from tilesim.compiler.schedule import CompileOptions, lower  # noqa: E402
from tilesim.core.simulate import simulate  # noqa: E402
from tilesim.workloads import load_workload  # noqa: E402
from tilesim.workloads.scalesim_topology import parse_topology  # noqa: E402

CONFIGS = ROOT / "workloads" / "configs"
TOPOLOGIES = {"resnet18": CONFIGS / "resnet18_scalesim.csv", "resnet50": CONFIGS / "resnet50_scalesim.csv"}

# GEMM cases in SCALE-Sim's M, N, K format: decode-like M=1 rows and shapes that are multiples of no array size.
GEMMS = [("decode_fc", 1, 1000, 512), ("decode_proj", 1, 256, 300), ("odd_small", 37, 19, 23),
         ("odd_mid", 100, 130, 70), ("odd_tall", 197, 61, 129), ("square", 256, 128, 256)]

# Sparse GEMM cases (M, N, K, N:M): K a multiple of M, partial last groups, 1:1 rows (dense in sparse mode, but
# OptimizedMapping compresses them too), several row and column folds on 8x8 and 32x32.
SPARSE_GEMMS = [("nm24_even", 16, 8, 16, "2:4"), ("nm14_partial", 10, 5, 13, "1:4"), ("nm24_folds", 7, 9, 30, "2:4"),
                ("dense_11", 20, 12, 24, "1:1"), ("nm38_partial", 9, 3, 17, "3:8"), ("nm24_big", 37, 70, 203, "2:4"),
                ("nm48_wide", 64, 100, 96, "4:8"), ("nm14_tall", 130, 40, 66, "1:4")]
SPARSE_MODES = {"none": ("false", "false"), "nm": ("true", "false"), "rowwise": ("true", "true")}

# A SCALE-Sim 3.0.0 config: every section its scale_config.read_conf_file() insists on. CALC mode: no stalls.
CFG_TEMPLATE = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   {sram_kb}
FilterSramSzkB:  {sram_kb}
OfmapSramSzkB:   {sram_kb}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : {sparse}
SparseRep : ellpack_block
OptimizedMapping : {optimized}
BlockSize : {block}
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

# Runs inside SCALE-Sim's venv. scalesim/scale.py hard-codes save_disk_space=False (it would write every SRAM and
# DRAM trace), so we call the API with save_disk_space=True; the layout file is required by 3.0.0 even when no
# custom layout is used (layout_utils.load_layout_conv opens it), and the topology file parses as one.
DRIVER = """
import sys
from scalesim.scale_sim import scalesim
cfg, topo, out, gemm = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "gemm"
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=topo, input_type_gemm=gemm)
s.run_scale(top_path=out)
"""

# Runs inside SCALE-Sim's venv: the compute half of single_layer_sim.run() (steps 1.1-1.4) for every layer, then the
# report items of calc_report_data() that do not need the memory system, with Total Cycles = demand rows - 1.
COMPUTE_DRIVER = """
import sys, json
from scalesim.scale_sim import scalesim
from scalesim.single_layer_sim import single_layer_sim
cfg, topo, gemm = sys.argv[1], sys.argv[2], sys.argv[3] == "gemm"
layout = sys.argv[4] if len(sys.argv) > 4 else topo     # its layout reader cannot parse an N:M column
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout, input_type_gemm=gemm)
rows = []
for i in range(s.topo.get_num_layers()):
    L = single_layer_sim()
    L.set_params(layer_id=i, config_obj=s.config, topology_obj=s.topo, layout_obj=s.layout, verbose=False)
    _, ifm = L.op_mat_obj.get_ifmap_matrix()
    _, fil = L.op_mat_obj.get_filter_matrix()
    _, ofm = L.op_mat_obj.get_ofmap_matrix()
    kw = dict(config_obj=s.config, ifmap_op_mat=ifm, filter_op_mat=fil, ofmap_op_mat=ofm)
    if L.dataflow == "ws":
        kw.update(sparsity_ratio_N=L.sparsity_ratio_N, sparsity_ratio_M=L.sparsity_ratio_M,
                  ifmap_op_mat_original=L.op_mat_obj.ifmap_addr_matrix_original,
                  sparsity_filter_array=L.op_mat_obj.sparse_filter_array)
    L.compute_system.set_params(**kw)
    L.compute_system.get_prefetch_matrices()
    _, _, ofmap_demand = L.compute_system.get_demand_matrices()
    macs = s.topo.get_layer_num_ofmap_px(i) * s.topo.get_layer_window_size(i)
    cycles = ofmap_demand.shape[0] - 1
    rows.append(dict(layer=i, total_incl_prefetch=None, cycles=int(cycles), stall=0,
                     overall_util_pct=macs * 100 / (cycles * L.num_mac_unit),
                     mapping_eff_pct=L.compute_system.get_avg_mapping_efficiency() * 100,
                     compute_util_pct=L.compute_system.get_avg_compute_utilization() * 100))
print(json.dumps(rows))
"""


def resnet50_csv() -> str:
    """workloads/configs/resnet50_scalesim.csv: torchvision ResNet-50 v1.5 convs and FC in SCALE-Sim's conv format.

    Each IFMAP size is the rows the layer touches, (E - 1) * s + R, so that SCALE-Sim's ceil((H - R + s) / s)
    gives torchvision's output size E (SCALE-Sim has no padding field); no pooling (SCALE-Sim has none)."""
    rows = []

    def conv(name: str, e: int, r: int, c: int, n: int, s: int) -> None:
        h = (e - 1) * s + r
        rows.append(f"{name},{h},{h},{r},{r},{c},{n},{s},")

    conv("conv1", 112, 7, 3, 64, 2)
    inp, size = 64, 56
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=False), start=1):
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 1 else 1
            p, out = f"layer{stage}.{i}", size // stride
            conv(f"{p}.conv1", size, 1, inp, planes, 1)
            conv(f"{p}.conv2", out, 3, planes, planes, stride)
            conv(f"{p}.conv3", out, 1, planes, planes * 4, 1)
            if stride != 1 or inp != planes * 4:
                conv(f"{p}.downsample.0", out, 1, inp, planes * 4, stride)
            inp, size = planes * 4, out
    rows.append("fc,1,1,1,1,2048,1000,1,")
    header = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
              "Strides,")
    return "\n".join([header, *rows]) + "\n"


def dense_row(row: str) -> str:
    """A topology row without its N:M column (SCALE-Sim's layout reader parses the topology as a conv layout)."""
    return re.sub(r",\s*\d+\s*:\s*\d+\s*,\s*$", ",", row)


def write_sparse_gemm_csv(path: Path) -> None:
    """The sparse GEMM cases as a SCALE-Sim M, N, K, N:M topology."""
    lines = ["Layer, M, N, K, Sparsity,"] + [f"{name}, {m}, {n}, {k}, {nm}," for name, m, n, k, nm in SPARSE_GEMMS]
    path.write_text("\n".join(lines) + "\n")


def write_case_cfg(work: Path, label: str, size: int, dataflow: str, args: argparse.Namespace) -> tuple[str, Path]:
    """(case name, its cfg file in its own folder under `work`) for one array size and dataflow."""
    case = f"{label}_{size}x{size}_{dataflow}_{args.max_layers or 'all'}"
    if args.sparse != "none":
        case += f"_{args.sparse}{args.block if args.sparse == 'rowwise' else ''}"
    sparse, optimized = SPARSE_MODES[args.sparse]
    (work / case).mkdir(exist_ok=True)
    cfg = work / case / f"{case}.cfg"
    cfg.write_text(CFG_TEMPLATE.format(name=case, rows=size, cols=size, sram_kb=args.sram_kb, dataflow=dataflow,
                                       sparse=sparse, optimized=optimized,
                                       block=args.block if args.sparse == "rowwise" else 8))
    return case, cfg


def topology_source(name: str, work: Path) -> Path:
    """The topology file of --topology `name`: a bundled one, the GEMM cases written into `work`, or a path."""
    writers = {"gemm": ("gemms.csv", write_gemm_csv), "sparse_gemm": ("sparse_gemms.csv", write_sparse_gemm_csv)}
    if name in writers:
        file, write = writers[name]
        write(work / file)
        return work / file
    return TOPOLOGIES.get(name) or Path(name)


def make_venv(path: Path) -> Path:
    """A virtualenv with scalesim 3.0.0 and numpy<2.4 at `path`; returns its python."""
    py = path / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    probe = subprocess.run([str(py), "-c", "import scalesim.scale_sim"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "scalesim==3.0.0", "numpy<2.4"], check=True)
    return py


def write_gemm_csv(path: Path) -> None:
    """The GEMM cases as a SCALE-Sim M, N, K topology (header row, trailing commas)."""
    lines = ["Layer, M, N, K,"] + [f"{name}, {m}, {n}, {k}," for name, m, n, k in GEMMS]
    path.write_text("\n".join(lines) + "\n")


def subset_csv(src: Path, dst: Path, max_layers: int | None) -> None:
    """Copy a topology, keeping the header and the first `max_layers` non-blank rows."""
    lines = src.read_text().splitlines()
    body = [ln for ln in lines[1:] if ln.strip()]
    dst.write_text("\n".join([lines[0]] + (body[:max_layers] if max_layers else body)) + "\n")


def read_compute_report(path: Path) -> list[dict]:
    """Rows of SCALE-Sim's COMPUTE_REPORT.csv as dicts of numbers."""
    with open(path) as f:
        rows = list(csv.reader(f))
    out = []
    for row in rows[1:]:
        cells = [c.strip() for c in row]
        if not cells or not cells[0]:
            continue
        out.append({"layer": int(cells[0]), "total_incl_prefetch": int(float(cells[1])), "cycles": int(float(cells[2])),
                        "stall": int(float(cells[3])), "overall_util_pct": float(cells[4]),
                        "mapping_eff_pct": float(cells[5]), "compute_util_pct": float(cells[6])})
    return out


def run_scalesim_compute(py: Path, work: Path, cfg: Path, topo: Path, kind: str, unique: bool = False,
                         jobs: int = 1) -> tuple[list[dict], float, bool]:
    """Run (or reuse from `work`) SCALE-Sim's compute module only; its report rows, seconds, whether cached.
    Each layer runs in its own SCALE-Sim process, `jobs` at a time, and its row is kept in `work`/layers as soon as
    it finishes, so an interrupted case resumes where it stopped. `unique`: run each distinct layer shape once
    (SCALE-Sim's numbers depend on the shape, not the name; repeated ResNet blocks then cost nothing) and give
    every layer its shape's row. The seconds are the sum of the layers' process wall times."""
    done = work / ("compute_unique.json" if unique else "compute.json")
    if done.exists():
        d = json.loads(done.read_text())
        return expand(d["rows"], d.get("shape_of")), d["wall_s"], True
    lines = topo.read_text().splitlines()
    header, body = lines[0], [ln for ln in lines[1:] if ln.strip()]
    shape_of, rows = list(range(len(body))), body
    if unique:
        shapes: dict[str, int] = {}
        for ln in body:
            shapes.setdefault(",".join(c.strip() for c in ln.split(",")[1:]), len(shapes))
        shape_of = [shapes[",".join(c.strip() for c in ln.split(",")[1:])] for ln in body]
        rows = [body[shape_of.index(i)] for i in range(len(shapes))]
    kept = work / "layers"
    kept.mkdir(exist_ok=True)
    cfg_text = cfg.read_text()

    def cached(i: int) -> dict | None:
        f = kept / f"layer{i}.json"
        d = json.loads(f.read_text()) if f.exists() else None
        return d if d and d["row_text"] == rows[i] and d["cfg"] == cfg_text else None

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    layers = [cached(i) for i in range(len(rows))]        # each kept layer read once; new ones added as they finish
    pending = [i for i, d in enumerate(layers) if d is None]
    running: dict = {}                                   # process -> (layer, start time)
    while pending or running:
        while pending and len(running) < jobs:
            i = pending.pop(0)
            layer_topo, layer_layout = kept / f"layer{i}.csv", kept / f"layer{i}_layout.csv"
            layer_topo.write_text(f"{header}\n{rows[i]}\n")
            layer_layout.write_text(f"{header}\n{dense_row(rows[i])}\n")
            proc = subprocess.Popen([str(py), "-c", COMPUTE_DRIVER, str(cfg), str(layer_topo), kind,
                                     str(layer_layout)], text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            running[proc] = (i, time.perf_counter())
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            i, t0 = running.pop(proc)
            out = proc.stdout.read()
            if proc.returncode:
                raise SystemExit(f"{work.name}: SCALE-Sim's compute module exited {proc.returncode} on {rows[i]}")
            row = json.loads(out.strip().splitlines()[-1])[0]
            layers[i] = {"row_text": rows[i], "cfg": cfg_text, "row": row, "wall_s": time.perf_counter() - t0}
            (kept / f"layer{i}.json").write_text(json.dumps(layers[i]))
    got = [dict(d["row"], layer=i) for i, d in enumerate(layers)]
    wall = sum(d["wall_s"] for d in layers)
    done.write_text(json.dumps({"rows": got, "wall_s": wall, "shape_of": shape_of if unique else None}))
    return expand(got, shape_of if unique else None), wall, False


def expand(rows: list[dict], shape_of: list[int] | None) -> list[dict]:
    """Per-shape rows back to per-layer rows (layer i gets its shape's row, renumbered i)."""
    return rows if shape_of is None else [dict(rows[s], layer=i) for i, s in enumerate(shape_of)]


def run_scalesim(py: Path, work: Path, cfg: Path, topo: Path, kind: str) -> tuple[list[dict], float, bool]:
    """Run (or reuse from `work`) one SCALE-Sim case; returns its report rows, wall seconds and whether cached."""
    done = work / "done.json"
    if done.exists():
        d = json.loads(done.read_text())
        return d["rows"], d["wall_s"], True
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(work / "scalesim.log", "w") as log:
        subprocess.run([str(py), "-c", DRIVER, str(cfg), str(topo), str(out), kind], check=True, stdout=log,
                       stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1",
                                                          OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    run_name = cfg.stem
    rows = read_compute_report(out / run_name / "COMPUTE_REPORT.csv")
    done.write_text(json.dumps({"rows": rows, "wall_s": wall}))
    return rows, wall, False


def run_tilesim(cfg: Path, topo: Path) -> tuple[list, float]:
    """Load the same .cfg and .csv through tilesim's loaders, lower in scalesim timing, simulate; (kernels, wall)."""
    t0 = time.perf_counter()
    arch = load_arch(str(cfg))
    graph = load_workload(str(topo))
    result = simulate(lower(graph, arch, CompileOptions(timing="scalesim")), arch)
    return list(result.kernels), time.perf_counter() - t0


def compare(case: str, ss_rows: list[dict], kernels: list) -> list[dict]:
    """One record per layer: both tools' cycles, mapping efficiency and overall utilization, and differences."""
    if len(ss_rows) != len(kernels):
        raise SystemExit(f"{case}: SCALE-Sim reports {len(ss_rows)} layers, tilesim {len(kernels)} kernels")
    out = []
    for ss, k in zip(ss_rows, kernels, strict=False):
        out.append({"case": case, "layer": k.name, "ss_cycles": ss["cycles"], "ts_cycles": k.compute_cycles,
                        "d_cycles": k.compute_cycles - ss["cycles"], "ss_stall": ss["stall"],
                        "ss_map_eff": ss["mapping_eff_pct"] / 100, "ts_map_eff": k.mapping_efficiency,
                        "ss_util": ss["overall_util_pct"] / 100, "ts_util": k.compute_utilization})
    return out


def print_table(records: list[dict]) -> None:
    """Per-layer table: cycles (SCALE-Sim, tilesim, difference), mapping efficiency %, overall utilization %."""
    head = (f"{'layer':<24}{'SS cycles':>12}{'ours':>12}{'diff':>7}{'SS map%':>10}{'ours':>10}"
            f"{'SS util%':>10}{'ours':>10}")
    print(head)
    for r in records:
        print(f"{r['layer'][:23]:<24}{r['ss_cycles']:>12}{r['ts_cycles']:>12}{r['d_cycles']:>7}"
              f"{100 * r['ss_map_eff']:>10.4f}{100 * r['ts_map_eff']:>10.4f}"
              f"{100 * r['ss_util']:>10.4f}{100 * r['ts_util']:>10.4f}")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run every selected case through both tools, print tables and a summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrays", default="8,32,128", help="square array sizes, comma-separated")
    ap.add_argument("--dataflows", default="ws,os,is")
    ap.add_argument("--topology", default="resnet18,resnet50,gemm", help="resnet18, resnet50, gemm or a .csv path")
    ap.add_argument("--max-layers", type=int, default=None, help="only the first N layers of each topology")
    ap.add_argument("--sram-kb", type=int, default=512, help="each of the three SRAMs, KiB")
    ap.add_argument("--venv", type=Path, default=None, help="reuse (or create) SCALE-Sim's venv here")
    ap.add_argument("--workdir", type=Path, default=None, help="keep SCALE-Sim outputs here and reuse finished cases")
    ap.add_argument("--json", type=Path, default=None, help="write every per-layer record here")
    ap.add_argument("--scalesim-only", action="store_true", help="only run SCALE-Sim (fill --workdir's cache)")
    ap.add_argument("--mode", choices=("full", "compute", "verify"), default="full",
                    help="full SCALE-Sim; its compute module only; or check compute-only against cached full runs")
    ap.add_argument("--unique", action="store_true",
                    help="--mode compute: run SCALE-Sim once per distinct layer shape (repeated blocks reuse it)")
    ap.add_argument("--jobs", type=int, default=1, help="--mode compute: SCALE-Sim processes at a time (one per layer)")
    ap.add_argument("--write-resnet50", type=Path, default=None, help="write the ResNet-50 CSV here and stop")
    ap.add_argument("--sparse", choices=tuple(SPARSE_MODES), default="none",
                    help="SCALE-Sim's sparse mode: nm (SparsitySupport, the topology's N:M per layer) or rowwise "
                         "(also OptimizedMapping); topology sparse_gemm has N:M rows")
    ap.add_argument("--block", type=int, default=8, help="--sparse rowwise: BlockSize")
    ap.add_argument("--ref-json", type=Path, default=None,
                    help="write SCALE-Sim's numbers with each case's cfg and topology text (tests/data reference)")
    args = ap.parse_args(argv)
    if args.write_resnet50:
        args.write_resnet50.write_text(resnet50_csv())
        return 0

    tmp = tempfile.TemporaryDirectory(prefix="scalesim_xcheck_")
    work = args.workdir or Path(tmp.name) / "work"
    work.mkdir(parents=True, exist_ok=True)
    py = make_venv(args.venv or Path(tmp.name) / "venv")

    records, walls, refs = [], [], []
    verify_cases, verify_bad = 0, []
    for topo_name in args.topology.split(","):
        src = topology_source(topo_name, work)
        kind, _ = parse_topology(Path(src).read_text(), str(src))   # SCALE-Sim needs `-i gemm` for M, N, K files
        label = Path(topo_name).stem
        topo = work / f"{label}_{args.max_layers or 'all'}.csv"
        subset_csv(src, topo, args.max_layers)
        for size in (int(a) for a in args.arrays.split(",")):
            for df in args.dataflows.split(","):
                case, cfg = write_case_cfg(work, label, size, df, args)
                case_dir = cfg.parent
                if args.mode == "verify":
                    if not (case_dir / "done.json").exists():
                        continue
                    full, _, _ = run_scalesim(py, case_dir, cfg, topo, kind)
                    fast, fast_wall, _ = run_scalesim_compute(py, case_dir, cfg, topo, kind)
                    for key in ("cycles", "stall", "overall_util_pct", "mapping_eff_pct", "compute_util_pct"):
                        diff = [(a["layer"], a[key], b[key])
                                for a, b in zip(full, fast, strict=False) if a[key] != b[key]]
                        verify_bad += diff
                        if diff:
                            print(f"{case}: {key} differs (layer, full, compute-only): {diff[:3]}")
                    verify_cases += len(full)
                    print(f"{case}: {len(full)} layers, compute-only {fast_wall:.1f} s", flush=True)
                    continue
                if args.mode == "compute":
                    ss_rows, ss_wall, cached = run_scalesim_compute(py, case_dir, cfg, topo, kind, args.unique,
                                                                    args.jobs)
                else:
                    ss_rows, ss_wall, cached = run_scalesim(py, case_dir, cfg, topo, kind)
                if args.scalesim_only:
                    print(f"{case}: SCALE-Sim {ss_wall:.1f} s{' (cached)' if cached else ''}", flush=True)
                    continue
                run_tilesim(cfg, topo)   # warm numba's JIT so the timing below is the steady state
                kernels, ts_wall = run_tilesim(cfg, topo)
                recs = compare(case, ss_rows, kernels)
                refs.append({"case": case, "cfg": cfg.read_text(), "topology": topo.read_text(),
                             "layers": [{"name": r["layer"], "cycles": ss["cycles"],
                                         "mapping_eff": ss["mapping_eff_pct"] / 100}
                                        for r, ss in zip(recs, ss_rows, strict=True)]})
                records += recs
                walls.append({"case": case, "scalesim_s": ss_wall, "tilesim_s": ts_wall, "cached": cached})
                print(f"\n== {case} ({args.mode}): SCALE-Sim {ss_wall:.1f} s{' (cached)' if cached else ''}, "
                      f"tilesim {ts_wall:.3f} s")
                print_table(recs)
                sys.stdout.flush()

    if args.mode == "verify":
        print(f"\ncompute-only vs full SCALE-Sim: {verify_cases} layer cases, {len(verify_bad)} differences")
        return 1 if verify_bad else 0
    bad = [r for r in records if r["d_cycles"] != 0]
    max_map = max((abs(r["ts_map_eff"] - r["ss_map_eff"]) for r in records), default=0.0)
    max_util = max((abs(r["ts_util"] / r["ss_util"] - 1) for r in records), default=0.0)
    print(f"\n{len(records)} layer cases in {len(walls)} runs; cycle mismatches: {len(bad)}; "
          f"max |cycle diff| {max((abs(r['d_cycles']) for r in records), default=0)}; "
          f"max |mapping eff diff| {max_map:.3g}; max overall util rel diff {max_util:.3g}")
    for w in walls:
        print(f"  {w['case']:<32} SCALE-Sim {w['scalesim_s']:9.1f} s   tilesim {w['tilesim_s']:7.3f} s")
    if args.json:
        args.json.write_text(json.dumps({"records": records, "walls": walls}, indent=1))
    if args.ref_json:
        command = "python benchmarks/scalesim_crosscheck.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.ref_json.write_text(json.dumps({"scalesim": "3.0.0", "command": command, "cases": refs}, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
