"""Predicted vs measured board power and SM clock on a real H100 and H200 (issue 20).

    python benchmarks/validate_power.py [--chip h100|h200|all] [--fit]

Measured: benchmarks/hardware/data/h100_silicon.csv group "power" (sustained loops of one kernel, mean board power
from nvidia-smi, mean SM clock) and the prefill/decode rows with power (the fused serving stack's where measured);
the same from h200_silicon.csv.
Predicted: the preset's average power (energy / latency of the run) and the clock the power cap left it
(sim/core/power.py). Fitted on h100 (`--fit` recomputes both from the data): static power = the measured idle
70.8 W; clock.cycle (pJ per cycle) on the 1 GiB copy loop's power; mac.bf16 (a tensor-core MAC as the GPU spends
it) on the 8192^3 bf16 GEMM loop's clock under the 700 W cap; the DVFS rule's v_floor is assumed. Every other row
is held out. Targets: power within 15% median, clock within 10% on the GEMMs.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from tilesim.arch import load_arch
from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import InputError
from tilesim.compiler.builder import GraphBuilder
from tilesim.compiler.schedule import CompileOptions
from tilesim.core.result import SimResult
from tilesim.core.simulate import simulate
from tilesim.studies import api
from tilesim.studies.runs import schedule

DATA = Path(__file__).resolve().parent / "hardware" / "data"
FIT = {"copy_1GiB", "gemm_bf16_8192"}           # the h100 loops the fitted values came from
FP8 = ("array.dtype=fp8", "array.macs_per_pe_cycle=2")   # H100 fp8: 2x the bf16 tensor rate (whitepaper)


def vector_graph(case: str):
    """The 1 GiB copy (a bf16 elementwise op over 2**29 elements: reads and writes 1 GiB) or the softmax loop."""
    if case == "copy_1GiB":
        b = GraphBuilder("copy_1GiB", "bf16")
        return b.build(b.add("Relu", [b.input("x", (2**29,))], name="copy"))
    rows, cols = (int(v) for v in case.split("_")[1].split("x"))
    b = GraphBuilder(case, "bf16")
    return b.build(b.add("Softmax", [b.input("x", (rows, cols))], {"axis": -1}, name="softmax"))


def predict(case: str, row: dict, arch: ArchConfig) -> SimResult | float | None:
    """The run of one measured row on `arch` (a SimResult), or for LLM phases their average power (W)."""
    if case.startswith(("copy_", "softmax_")):
        return simulate(schedule(vector_graph(case), arch, CompileOptions()), arch)
    if case.startswith("gemm_fp8_"):
        s = int(case.rsplit("_", 1)[1])
        fp8 = load_arch(arch.name, list(FP8))
        return api.run(f"gemm:{s},{s},{s}", fp8, dtype="fp8").sim
    if case.startswith(("gemm_bf16_", "gemm_")) and row.get("m"):
        m, n, k = (int(row[c]) for c in ("m", "n", "k"))
        return api.run(f"gemm:{m},{n},{k}", arch, dtype="bf16").sim
    if case.startswith("gemv_"):
        m, n, k = case.split("_")[1].split("x")
        return api.run(f"gemm:{m},{n},{k}", arch, dtype="bf16").sim
    if case.startswith("sdpa_S"):
        return api.run("attention", arch, seq_len=int(case[6:]), dtype="bf16").sim
    if row["group"] in ("prefill", "decode"):
        opts = {"seq_len": int(row["seq"])} if row["group"] == "prefill" else {"context": int(row["context"])}
        model = row.get("model") or case.split("_")[0]
        llm = api.run(model, arch, phase=row["group"], batch=int(row["batch"]), dtype="bf16", **opts).llm
        return llm.energy_pj * 1e-12 / llm.latency_s if llm and llm.latency_s else None
    return None


def rows_of(chip: str) -> list[dict]:
    """The measured rows with board power: the chip's power loops, prefill and decode from measure_gpu.py
    (<chip>_silicon.csv; decoder steps from <chip>_silicon_fused.csv, the serving stack, where it exists, as
    validate_silicon.py takes them); the older h200_measurements.csv only where no measure_gpu.py data exist."""
    path = DATA / f"{chip}_silicon.csv"
    if not path.exists():
        path = DATA / "h200_measurements.csv"
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("power_w") not in (None, "", "nan") and r["group"] != "idle"]
    if path.name.endswith("_silicon.csv"):
        rows = [r for r in rows if r["group"] in ("power", "prefill", "decode")]
        fused = DATA / f"{chip}_silicon_fused.csv"
        if fused.exists():
            with open(fused) as f:
                steps = [r for r in csv.DictReader(f) if r.get("power_w") not in (None, "", "nan")
                         and r["group"] in ("prefill", "decode")]
            rows = [r for r in rows if r["group"] == "power"] + steps
    return rows


def fit(arch_name: str = "h100") -> None:
    """Print the fitted clock.cycle pJ (copy loop's power) and mac.bf16 pJ (the 8192^3 GEMM loop's clock under the
    cap) from the measurements."""
    rows = {r["case"]: r for r in rows_of(arch_name)}
    free = load_arch(arch_name, ["energy.actions.clock.cycle.pj=0", "power.cap_w=0"])
    copy = predict("copy_1GiB", rows["copy_1GiB"], free)
    idle_w = free.energy.static_mw * 1e-3
    pj = (float(rows["copy_1GiB"]["power_w"]) - copy.power_w) / free.clock_hz * 1e12
    print(f"clock.cycle: ({float(rows['copy_1GiB']['power_w']):.1f} W measured - {copy.power_w:.1f} W modelled "
          f"(idle {idle_w:.1f} W + dynamic)) / {free.clock_hz / 1e9:.2f} GHz = {pj:.0f} pJ per cycle")
    target_hz = float(rows["gemm_bf16_8192"]["sm_clock_mhz"]) * 1e6
    lo, hi = 0.1, 10.0                               # more pJ per MAC: more power, a lower clock under the cap
    for _ in range(14):
        mid = (lo * hi) ** 0.5
        arch = load_arch(arch_name, [f"energy.actions.clock.cycle.pj={pj:.0f}", f"energy.actions.mac.bf16.pj={mid}"])
        hz = predict("gemm_bf16_8192", rows["gemm_bf16_8192"], arch).clock_hz
        lo, hi = (mid, hi) if hz > target_hz else (lo, mid)
    print(f"mac.bf16: {lo:.3f} pJ (the 8192^3 GEMM loop at {target_hz / 1e9:.3f} GHz under the cap)")


def validate(chip: str) -> list[dict]:
    """Predicted vs measured power (and clock where measured) for every row of one chip; prints one line each."""
    arch = load_arch(chip)
    cap = arch.power.cap_w if arch.power else 0
    print(f"\n=== {chip}: preset `{chip}` (cap {cap:g} W) vs measured board power ===")
    print(f"{'case':<34}{'power W meas':>13}{'pred':>7}{'err':>7}{'clock GHz meas':>16}{'pred':>6}{'err':>7}")
    out = []
    for row in rows_of(chip):
        case = row["case"]
        try:
            res = predict(case, row, arch)
        except InputError as exc:                # e.g. a decode step at the model's last position
            print(f"  tilesim refused {case}: {str(exc).splitlines()[0][:120]}")
            continue
        if res is None:
            continue
        pred_w = res if isinstance(res, float) else res.power_w
        meas_w = float(row["power_w"])
        rec = {"case": case, "fit": chip == "h100" and case in FIT, "err_w": pred_w / meas_w - 1,
               "gemm": "gemm" in case and "gemv" not in case}
        clock = ""
        if isinstance(res, SimResult) and row.get("sm_clock_mhz") not in (None, "", "nan"):
            meas_hz = float(row["sm_clock_mhz"]) * 1e6
            rec["err_hz"] = res.clock_hz / meas_hz - 1
            clock = f"{meas_hz / 1e9:>16.2f}{res.clock_hz / 1e9:>6.2f}{100 * rec['err_hz']:>+6.0f}%"
        out.append(rec)
        print(f"{case[:33]:<34}{meas_w:>13.0f}{pred_w:>7.0f}{100 * rec['err_w']:>+6.0f}%{clock}"
              f"{'  (fit)' if rec['fit'] else ''}", flush=True)
    return out


def summary(chip: str, recs: list[dict]) -> None:
    """Median and max |error| over the held-out rows: power (all, sustained loops) and clock on the GEMMs."""
    test = [r for r in recs if not r["fit"]]
    print(f"\n{chip}, held out (fit rows excluded):  {'median':>8}{'max':>8}{'n':>4}  target")
    for name, errs, target in (("board power", [r["err_w"] for r in test], 0.15),
                               ("SM clock, GEMMs", [r["err_hz"] for r in test if r["gemm"] and "err_hz" in r], 0.10),
                               ("SM clock, all with a clock", [r["err_hz"] for r in test if "err_hz" in r], None)):
        if errs:
            med = statistics.median(abs(e) for e in errs)
            verdict = "" if target is None else ("ok" if med <= target else f"MISSES {100 * target:.0f}%")
            print(f"  {name:<32}{100 * med:7.1f}%{100 * max(abs(e) for e in errs):7.1f}%{len(errs):4d}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chip", choices=("h100", "h200", "all"), default="all")
    ap.add_argument("--fit", action="store_true", help="recompute h100's fitted clock.cycle and mac.bf16, then stop")
    args = ap.parse_args(argv)
    if args.fit:
        fit()
        return 0
    chips = [c for c in ("h100", "h200") if args.chip in (c, "all")]
    results = {c: validate(c) for c in chips}
    for chip, recs in results.items():
        summary(chip, recs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
