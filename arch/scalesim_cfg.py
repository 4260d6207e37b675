"""SCALE-Sim `.cfg` (INI) -> the raw arch mapping that `arch_from_dict` takes, so `--arch run.cfg` just works.

The keys and sections are those SCALE-Sim 3.0.0 reads (scalesim/scale_config.py, read_conf_file) plus the ones its
bundled configs carry (configs/scale.cfg, configs/google.cfg in scalesim-project/scale-sim-v2). Key names are
case-insensitive, as in SCALE-Sim (configparser lower-cases them). What a SCALE-Sim config becomes:

- array: ArrayHeight x ArrayWidth PEs, Dataflow ws|os|is, `timing: scalesim` (its closed-form fold timing).
- words: SCALE-Sim counts 1-byte words (single_layer_sim.py: `word_size = 1`) and has no accumulator width, so
  dtype and acc_dtype are both int8: partial sums occupy one byte in ofmap_sram as in SCALE-Sim. Use
  `--set array.acc_dtype=int32` for a realistic accumulator.
- memory: `dram` (off-chip, unbounded in SCALE-Sim: 1 TiB here) and three double-buffered on-chip levels, as
  SCALE-Sim's double_buffered_scratchpad (active fraction 0.5): `ifmap_sram` holds the input, `filter_sram` the
  weight, `ofmap_sram` the output, with the cfg's sizes in KiB (`1024 * <X>SramSzkB` bytes).
- DRAM bandwidth: `Bandwidth` (words/cycle, so bytes/cycle); a comma list uses its first value, as SCALE-Sim's
  USER mode does for the ofmap (single_layer_sim.py, `bws[0]`). In CALC mode SCALE-Sim ignores it and reports the
  stall-free bandwidth instead; tilesim still needs a number: `Bandwidth` if given, else 10 words/cycle (the
  "arbitrary" backing bandwidth SCALE-Sim's CALC mode uses for ifmap and filter). Compute cycles do not depend on
  it; tilesim's stall cycles do.
- on-chip bandwidths (not used for timing): ifmap_sram ArrayHeight bytes/cycle, filter_sram and ofmap_sram
  ArrayWidth bytes/cycle (one word per array edge PE per cycle). The vector unit (SCALE-Sim has none) gets
  ArrayWidth lanes.
- clock: SCALE-Sim counts cycles only; 1 GHz is assumed so that latencies print in seconds.
- energy: SCALE-Sim has none; DEFAULT_ENERGY below holds labelled 45 nm defaults (Horowitz, ISSCC 2014, the
  numbers of arch/presets/gemmini.yaml), one entry per action of the three SRAM levels.

- sparsity: with `SparsitySupport = true` the array skips pruned weights (SCALE-Sim 3.0.0's sparse mode,
  scalesim/compute/operand_matrix.py and systolic_compute_ws.py): `array.sparsity: [structured]`, each layer's
  N:M ratio coming from its topology row (the filter keeps N of every M rows along K, so the array runs
  K' = (K // M) * N + min(K % M, N) rows, in every dataflow); with `OptimizedMapping = true`, `rowwise:<BlockSize>`
  (every column keeps at most BlockSize/2 of each block, two blocks share one BlockSize-row slot: K' =
  ceil(K / 2B) * B, whatever the topology's ratio). SparseRep (csr, csc, ellpack_block) changes only SCALE-Sim's
  storage report; tilesim stores N:M weights as values plus ceil(log2 M)-bit indices (compiler/sparsity.py).
  RandomNumberGeneratorSeed draws OptimizedMapping's per-column ratios, which do not change its cycles.

Accepted but without effect on tilesim: the DRAM address offsets, request-buffer sizes, bank counts and ports,
custom SRAM layouts (they change SCALE-Sim's bank conflicts, not its compute cycles), run_presets' SRAM/DRAM row
and bank sizes, TimeLinearModel and TopologyCsvLoc (the topology is `--workload`).
Refused: UseRamulatorTrace = True (tilesim has no Ramulator model).
"""
from __future__ import annotations

import configparser
import difflib
import math
from pathlib import Path
from typing import Any

from tilesim.arch.dataflow import DATAFLOWS as DATAFLOW_TABLE
from tilesim.arch.errors import InputError, allowed_list, did_you_mean, field_error

CLOCK_HZ = 1_000_000_000            # assumed: SCALE-Sim has no clock
DRAM_CAPACITY_BYTES = 2**40         # SCALE-Sim's DRAM is unbounded
CALC_DEFAULT_BANDWIDTH = 10         # words/cycle; single_layer_sim.py's CALC-mode backing bandwidth
DATAFLOWS = tuple(DATAFLOW_TABLE)
BANDWIDTH_MODES = ("CALC", "USER")
SPARSE_REPS = ("csr", "csc", "ellpack_block")     # scalesim/single_layer_sim.py calculate_filter_metadata_storage

_SOURCE_MAC = "default, SCALE-Sim has no energy model: Horowitz ISSCC 2014, 8-bit mult 0.2 pJ + add 0.03 pJ"
_SOURCE_DRAM = "default, SCALE-Sim has no energy model: Horowitz ISSCC 2014, DRAM 1300 pJ per 64 bit / 8 B"
_SOURCE_SRAM = ("default, SCALE-Sim has no energy model: Horowitz ISSCC 2014, 32 KB SRAM bank 20 pJ per 64-bit "
                "access / 8 B")
DEFAULT_ENERGY: dict[str, Any] = {
    "node": "45 nm (Horowitz, ISSCC 2014) defaults: a SCALE-Sim config has no energy data",
    "defaults": {},                 # at the arch's node_nm, 45 (raw_from_cfg)
    "actions": {
        "mac.int8": {"pj": 0.23, "source": _SOURCE_MAC, "node": "45nm"},
        "vector.op": {"pj": 0.1, "source": "default, SCALE-Sim has no energy model: Horowitz ISSCC 2014, "
                                           "32-bit int add 0.1 pJ", "node": "45nm"},
        "dram.read_byte": {"pj": 162.5, "source": _SOURCE_DRAM, "node": "45nm"},
        "dram.write_byte": {"pj": 162.5, "source": _SOURCE_DRAM, "node": "45nm"},
        **{f"{level}.{action}": {"pj": 2.5, "source": _SOURCE_SRAM, "node": "45nm"}
           for level in ("ifmap_sram", "filter_sram", "ofmap_sram") for action in ("read_byte", "write_byte")},
    },
    "static_mw": 0,
    "static_source": "not modelled: SCALE-Sim has no power model",
}

# Every key a section may hold, in SCALE-Sim's spelling, with its kind: 'int' (>= 1), 'offset' (>= 0),
# 'bool', 'str', 'bandwidth' (comma list of numbers > 0), or a tuple of allowed words.
_LAYOUT_KEYS = {"IfmapCustomLayout": "bool", "FilterCustomLayout": "bool", "IfmapSRAMBankBandwidth": "int",
                "IfmapSRAMBankNum": "int", "IfmapSRAMBankPort": "int", "FilterSRAMBankBandwidth": "int",
                "FilterSRAMBankNum": "int", "FilterSRAMBankPort": "int"}
KEYS: dict[str, dict[str, Any]] = {
    "general": {"run_name": "str"},
    "architecture_presets": {
        "ArrayHeight": "int", "ArrayWidth": "int", "IfmapSramSzkB": "int", "FilterSramSzkB": "int",
        "OfmapSramSzkB": "int", "IfmapOffset": "offset", "FilterOffset": "offset", "OfmapOffset": "offset",
        "Bandwidth": "bandwidth", "Dataflow": DATAFLOWS, "MemoryBanks": "int", "OnChipMemoryBanks": "int",
        "OnChipMemoryBankPorts": "int", "ReadRequestBuffer": "int", "WriteRequestBuffer": "int",
        "TopologyCsvLoc": "str", **_LAYOUT_KEYS},     # configs/scale.cfg keeps the layout keys here
    "layout": dict(_LAYOUT_KEYS),
    "sparsity": {"SparsitySupport": "bool", "SparseRep": "str", "OptimizedMapping": "bool", "BlockSize": "int",
                 "RandomNumberGeneratorSeed": "offset", "NonZeroElems": "int"},
    "run_presets": {"InterfaceBandwidth": BANDWIDTH_MODES, "UseRamulatorTrace": "bool", "SRAM_row_size": "int",
                    "SRAM_bank_size": "int", "DRAM_row_size": "int", "DRAM_bank_size": "int",
                    "TimeLinearModel": "str"},
    "network_presets": {"TopologyCsvLoc": "str"},
}
REQUIRED = {"general": ("run_name",),
            "architecture_presets": ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB",
                                     "OfmapSramSzkB", "Dataflow"),
            "run_presets": ("InterfaceBandwidth",)}


def _convert(kind: str | tuple[str, ...], text: str) -> Any:
    """A cfg value as `kind` says; raises ValueError with what is allowed."""
    if isinstance(kind, tuple):
        word = text.upper() if kind == BANDWIDTH_MODES else text.lower()
        if word not in kind:
            raise ValueError(f"got {text!r}, allowed: {', '.join(kind)}")
        return word
    if kind == "str":
        return text
    if kind == "bool":
        if text.lower() not in configparser.ConfigParser.BOOLEAN_STATES:
            raise ValueError(f"got {text!r}, allowed: True, False")
        return configparser.ConfigParser.BOOLEAN_STATES[text.lower()]
    if kind == "bandwidth":
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"got {text!r}, allowed: numbers > 0 (words/cycle), comma-separated")
        return values
    try:
        value = int(text)
    except ValueError:
        value = None
    low = 0 if kind == "offset" else 1
    if value is None or value < low:
        raise ValueError(f"got {text!r}, allowed: an integer >= {low}")
    return value


def read_cfg(text: str, source: str) -> dict[str, dict[str, Any]]:
    """Parse and check a SCALE-Sim cfg: {section: {canonical key: value}}; InputError lists every problem."""
    parser = _parse(text, source)
    errors: list[tuple[str, str]] = []
    out: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    if parser.defaults():
        errors.append((f"{source}: DEFAULT", f"unknown section; allowed: {allowed_list(KEYS)}"))
    for section in parser.sections():
        if section not in KEYS:
            errors.append((f"{source}: [{section}]",
                           f"unknown section{did_you_mean(section, KEYS)}; allowed: {allowed_list(KEYS)}"))
            continue
        canon = {k.lower(): k for k in KEYS[section]}
        values = out.setdefault(section, {})
        for key, text in parser.items(section, raw=True):
            if key not in canon:
                close = difflib.get_close_matches(key, list(canon), n=1, cutoff=0.6)
                near = f" (did you mean '{canon[close[0]]}'?)" if close else ""
                errors.append((f"{source}: {section}.{key}",
                               f"unknown key{near}; allowed: {allowed_list(KEYS[section])}"))
                continue
            name = canon[key]
            seen.add((section, name))
            try:
                values[name] = _convert(KEYS[section][name], text.strip())
            except ValueError as e:
                errors.append((f"{source}: {section}.{name}", str(e)))
    errors += _missing_and_unsupported(out, seen, source)
    if errors:
        raise InputError(errors)
    return out


def _parse(text: str, source: str) -> configparser.ConfigParser:
    """The cfg's INI structure, or InputError naming the line of a missing header or duplicate."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=source)
    except configparser.MissingSectionHeaderError as e:
        raise InputError(f"{source}: line {e.lineno}: expected a [section] header first, e.g. [general]") from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as e:
        what = f"key '{e.option}' in [{e.section}]" if isinstance(e, configparser.DuplicateOptionError) \
            else f"section [{e.section}]"
        raise InputError(f"{source}: line {e.lineno}: duplicate {what}") from None
    except configparser.Error as e:
        raise InputError(f"{source}: malformed cfg ({str(e).splitlines()[0]})") from None
    return parser


def _missing_and_unsupported(out: dict[str, dict[str, Any]], seen: set[tuple[str, str]],
                             source: str) -> list[tuple[str, str]]:
    """Required keys that are missing, and settings tilesim does not model (Ramulator, sparsity)."""
    errors = []
    for section, keys in REQUIRED.items():
        for key in keys:
            if (section, key) not in seen:
                errors.append((f"{source}: {section}.{key}", "required key is missing"))
    runs = out.get("run_presets", {})
    if runs.get("InterfaceBandwidth") == "USER" and ("architecture_presets", "Bandwidth") not in seen:
        errors.append((f"{source}: architecture_presets.Bandwidth",
                       "required when run_presets.InterfaceBandwidth is USER (words/cycle)"))
    if runs.get("UseRamulatorTrace"):
        errors.append((f"{source}: run_presets.UseRamulatorTrace",
                       "tilesim has no Ramulator DRAM model; allowed: False"))
    sparse = out.get("sparsity", {})
    if sparse.get("SparsitySupport"):
        for key in ("SparseRep", "OptimizedMapping"):     # scale_config.py reads them when sparsity is on
            if ("sparsity", key) not in seen:
                errors.append((f"{source}: sparsity.{key}", "required when sparsity.SparsitySupport is true"))
        rep = sparse.get("SparseRep")
        if rep is not None and rep.strip().lower() not in SPARSE_REPS:
            errors.append((f"{source}: sparsity.SparseRep", f"got {rep!r}, allowed: {', '.join(SPARSE_REPS)}"))
        if sparse.get("OptimizedMapping"):
            if out.get("architecture_presets", {}).get("Dataflow") not in (None, "ws"):
                errors.append((f"{source}: sparsity.OptimizedMapping", "SCALE-Sim 3.0.0 runs it with Dataflow ws "
                                                                       "only (its os and is modules fail); allowed: "
                                                                       "false"))
            block = sparse.get("BlockSize")
            rows = out.get("architecture_presets", {}).get("ArrayHeight")
            if block is None:
                errors.append((f"{source}: sparsity.BlockSize", "required when sparsity.OptimizedMapping is true"))
            elif block % 2 or (rows is not None and block > rows):
                errors.append((f"{source}: sparsity.BlockSize", f"got {block}, allowed: an even number <= "
                                                                f"ArrayHeight ({rows})"))
    return errors


def array_sparsity(cfg: dict[str, dict[str, Any]]) -> list[str]:
    """The array.sparsity of a cfg's [sparsity] section (arch/sparsity.py): none, structured, or rowwise:B."""
    sparse = cfg.get("sparsity", {})
    if not sparse.get("SparsitySupport"):
        return []
    return [f"rowwise:{sparse['BlockSize']}"] if sparse.get("OptimizedMapping") else ["structured"]


def raw_from_cfg(text: str, source: str) -> dict[str, Any]:
    """The raw arch mapping (as an arch YAML would give) for SCALE-Sim cfg text."""
    cfg = read_cfg(text, source)
    arch, runs = cfg["architecture_presets"], cfg["run_presets"]
    rows, cols, dataflow = arch["ArrayHeight"], arch["ArrayWidth"], arch["Dataflow"]
    bandwidth = arch.get("Bandwidth", [CALC_DEFAULT_BANDWIDTH])[0]
    kib = {op: arch[f"{op}SramSzkB"] for op in ("Ifmap", "Filter", "Ofmap")}
    name = str(cfg["general"]["run_name"]).strip() or Path(source).stem
    return {
        "name": name,
        "description": (f"SCALE-Sim config {Path(source).name}: {rows}x{cols} {dataflow.upper()} array, SRAM "
                        f"ifmap/filter/ofmap {kib['Ifmap']}/{kib['Filter']}/{kib['Ofmap']} KiB, DRAM "
                        f"{bandwidth:g} words/cycle ({runs['InterfaceBandwidth']}), 1-byte words, 1 GHz assumed"),
        "clock_hz": CLOCK_HZ,
        "timing": "scalesim",
        "array": {"rows": rows, "cols": cols, "dataflow": dataflow, "dtype": "int8", "acc_dtype": "int8",
                  "sparsity": array_sparsity(cfg)},
        "vector": {"lanes": cols, "ops_per_lane_cycle": 1},
        "memory": [
            {"name": "dram", "kind": "offchip", "capacity_bytes": DRAM_CAPACITY_BYTES,
             "bandwidth_bytes_per_cycle": float(bandwidth), "latency_cycles": 0,
             "holds": ["input", "weight", "output"]},
            {"name": "ifmap_sram", "kind": "sram", "capacity_bytes": 1024 * kib["Ifmap"],
             "bandwidth_bytes_per_cycle": float(rows), "holds": ["input"], "double_buffered": True},
            {"name": "filter_sram", "kind": "sram", "capacity_bytes": 1024 * kib["Filter"],
             "bandwidth_bytes_per_cycle": float(cols), "holds": ["weight"], "double_buffered": True},
            {"name": "ofmap_sram", "kind": "sram", "capacity_bytes": 1024 * kib["Ofmap"],
             "bandwidth_bytes_per_cycle": float(cols), "holds": ["output"], "double_buffered": True},
        ],
        "energy": {**DEFAULT_ENERGY, "defaults": {}, "actions": {k: dict(v) for k, v in
                                                               DEFAULT_ENERGY["actions"].items()}},
        "node_nm": 45,               # the energy defaults' node (SCALE-Sim has none); the area model uses it too
    }


def load_cfg(path: str | Path) -> dict[str, Any]:
    """The raw arch mapping for a SCALE-Sim .cfg file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise field_error("arch", f"cannot read '{path}': {e}") from None
    return raw_from_cfg(text, str(path))


__all__ = ["DEFAULT_ENERGY", "KEYS", "SPARSE_REPS", "array_sparsity", "load_cfg", "raw_from_cfg", "read_cfg"]
