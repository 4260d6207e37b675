"""`tilesim sweep --system ...`: a grid over parallel layouts, systems, system-file fields and chip fields, run by
the ordinary sweep machinery (studies/sweep.py run_sweep: process pool, --resume, the .partial file, --random).

Grid keys (values are YAML scalars, as in --set):
- a layout axis: a SystemOptions field (system, tp, pp, ep, dp, micro_batches, virtual_stages, ...); `system` takes
  preset names or system YAML files;
- `system.<field>`: a field of the `system:` mapping (e.g. system.link.bandwidth_gb_s, system.link.pj_per_bit,
  system.chips; arch/system.py override_system);
- `chip.<dotted arch field>`: a --set override of the chip (e.g. chip.memory.hbm.bandwidth_gb_s).
A point that does not divide the model or fit its chips is a row with status invalid and the reason.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from tilesim.arch.errors import InputError
from tilesim.arch.loader import load_yaml_text
from tilesim.arch.system import load_system
from tilesim.compiler.schedule import CompileOptions
from tilesim.studies.options import LLMOptions, OptionError, SystemOptions, WorkloadOptions
from tilesim.studies.system import LAYOUT_AXES, SystemResult, system_dict, system_run

CHIP_PREFIX, SYSTEM_PREFIX = "chip.", "system."
# the figures of a system row: LAYOUT_COLUMNS first (the decode phase's comm share, link energy and bubble when it
# ran, else the prefill's), then the whole run's latency and energy, the chips' silicon and the chips used
LAYOUT_COLUMNS = ("ttft_s", "tpot_s", "tokens_per_s", "j_per_token", "comm_share", "link_pj", "bubble",
                  "max_memory_bytes")
SYSTEM_METRICS = (*LAYOUT_COLUMNS, "latency_s", "energy_pj", "edp", "area_mm2", "chips_used")


def system_metrics(r: SystemResult) -> dict[str, Any]:
    """The numbers of a system row (SYSTEM_METRICS) from its JSON mapping; area_mm2 is every used chip's."""
    d = system_dict(r)
    phase = d["decode"] or d["prefill"]
    one = r.stages[0].llm
    sim = one.prefill or (one.decode[0].start if one.decode else None)
    chip_mm2 = sim.area_mm2 if sim else None
    return {**{k: d[k] for k in ("ttft_s", "tpot_s", "tokens_per_s", "j_per_token", "max_memory_bytes",
                                 "latency_s", "energy_pj", "chips_used")},
            "comm_share": phase["comm_share"], "link_pj": phase["link_pj"], "bubble": phase["bubble"],
            "edp": d["latency_s"] * d["energy_pj"],
            "area_mm2": chip_mm2 * d["chips_used"] if chip_mm2 else None}


def check_key(key: str) -> None:
    """A grid key must be a layout axis, system.<field> or chip.<field>; one line naming what is allowed."""
    if key in LAYOUT_AXES or (key.startswith((CHIP_PREFIX, SYSTEM_PREFIX)) and key.count(".") and key[-1] != "."):
        return
    raise OptionError("grid", f"with {{system}} the grid takes layout options ({', '.join(LAYOUT_AXES)}), "
                              "system.<field> (e.g. system.link.bandwidth_gb_s) or chip.<arch field> (e.g. "
                              "chip.memory.hbm.bandwidth_gb_s)", detail=key)


def layout_value(key: str, text: str) -> Any:
    """A grid value in its option's type: int and bool layout axes checked, others as YAML scalars."""
    value = load_yaml_text(text, f"--grid {key}")
    if key not in LAYOUT_AXES:
        return value
    kind = typing.get_type_hints(SystemOptions)[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError("grid", f"'{text}' is not an integer", detail=key)
    if kind is bool and not isinstance(value, bool):
        raise OptionError("grid", f"'{text}' is not true or false", detail=key)
    return value if kind in (int, bool) else str(value)


def header(keys: list[str]) -> list[str]:
    """CSV header of a system sweep: the grid keys, status, settings, SYSTEM_METRICS, setup and reason."""
    return [*keys, "status", *(c for c in ("workload", "system", "phase") if c not in keys), *SYSTEM_METRICS, "arch",
            "setup", "reason"]


@dataclass(frozen=True)
class SystemSweepSpec:
    """What every point of a system sweep shares: the decoder LLM, its options, the base layout (with the base
    system) and the chip's --set overrides. run_sweep calls row() and header() (studies/sweep.py)."""
    workload: WorkloadOptions
    llm: LLMOptions = field(default_factory=LLMOptions)
    options: CompileOptions = field(default_factory=CompileOptions)
    base: SystemOptions = field(default_factory=SystemOptions)
    overrides: tuple[str, ...] = ()
    is_llm = True

    @cached_property
    def setup(self) -> str:
        """Short hash of everything but the grid values (--resume reuses only rows with the same setup)."""
        d = {"workload": dataclasses.asdict(self.workload), "llm": dataclasses.asdict(self.llm),
             "options": dataclasses.asdict(self.options), "base": dataclasses.asdict(self.base),
             "overrides": list(self.overrides), "kind": "system"}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def header(self, keys: list[str]) -> list[str]:
        """The CSV header."""
        return header(keys)

    def run(self, point: dict[str, str]) -> SystemResult:
        """The system run of one point (InputError when it does not divide, fit or parse)."""
        values = {k: layout_value(k, v) for k, v in point.items()}
        layout = {k: v for k, v in values.items() if k in LAYOUT_AXES}
        chip = tuple(f"{k.removeprefix(CHIP_PREFIX)}={v}" for k, v in point.items() if k.startswith(CHIP_PREFIX))
        fields_ = tuple((k.removeprefix(SYSTEM_PREFIX), v) for k, v in values.items() if k.startswith(SYSTEM_PREFIX))
        o = replace(self.base, **layout)
        system = load_system(o.system, (*self.overrides, *chip), fields_) if o.system else None
        return system_run(self.workload, self.llm, self.options, o, (*self.overrides, *chip), system=system)

    def row(self, point: dict[str, str]) -> dict[str, str]:
        """One CSV row (all cells text); bad input is status invalid, a bug status error (as studies/sweep.py)."""
        row: dict[str, Any] = dict(point, status="ok", workload=self.workload.workload,
                                   system=point.get("system", self.base.system), phase=self.llm.run_phase,
                                   setup=self.setup, reason="")
        try:
            r = self.run(point)
            row.update(system_metrics(r), arch=r.system.chip.name)
        except InputError as e:
            row.update(status="invalid", reason=" ".join(str(e).split()))
        except Exception as e:  # a bug must not lose the sweep: the row says so and --resume retries it
            row.update(status="error", reason=" ".join(f"internal error: {type(e).__name__}: {e}".split()))
        return {c: "" if row.get(c) is None else repr(float(row[c])) if isinstance(row[c], float) else str(row[c])
                for c in header(list(point))}


def check_points(spec: SystemSweepSpec, axes: list[tuple[str, list[str]]]) -> None:
    """Before running: every key allowed, every value parses, and the first value of each system./chip. axis
    loads on the base system (typos in field names are one-line errors now, not a column of invalid rows)."""
    for key, values in axes:
        check_key(key)
        for v in values:
            layout_value(key, v)
    systems = [v for k, vs in axes if k == "system" for v in vs] or [spec.base.system]
    if systems[0] is None:
        raise OptionError("system", "a system sweep needs {system} or a --grid system=... axis")
    first = {k: vs[0] for k, vs in axes if k.startswith((CHIP_PREFIX, SYSTEM_PREFIX))}
    if first:
        chip = tuple(f"{k.removeprefix(CHIP_PREFIX)}={v}" for k, v in first.items() if k.startswith(CHIP_PREFIX))
        fields_ = tuple((k.removeprefix(SYSTEM_PREFIX), load_yaml_text(v, f"--grid {k}")) for k, v in first.items()
                        if k.startswith(SYSTEM_PREFIX))
        load_system(str(systems[0]), (*spec.overrides, *chip), fields_)


__all__ = ["SYSTEM_METRICS", "SystemSweepSpec", "check_points", "header", "system_metrics"]
