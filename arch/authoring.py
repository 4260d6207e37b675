"""Arch files people write: the commented templates (arch/presets/templates/*.yaml) and `tilesim show-arch` YAML that
stays editable (its inputs written, what the models derive from them marked, so that editing node_nm takes effect)."""
from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from tilesim.arch.config import AreaTable
from tilesim.arch.errors import InputError, did_you_mean
from tilesim.arch.loader import apply_overrides, arch_from_dict, arch_to_dict, raw_arch

TEMPLATES = ("edge", "datacenter", "gpu")
Raw = dict[str, Any]


def template_text(name: str) -> str:
    """The commented YAML of template `name` (edge, datacenter, gpu): a minimal arch that loads as it is."""
    if name not in TEMPLATES:
        raise InputError(f"--template: unknown template '{name}'{did_you_mean(name, TEMPLATES)}; "
                         f"allowed: {', '.join(TEMPLATES)}")
    return resources.files("tilesim.arch.presets").joinpath("templates", f"{name}.yaml").read_text()


def editable_arch(spec: str, overrides: list[str] | None = None) -> tuple[Raw, dict[str, Raw]]:
    """(mapping, derived actions) of an arch after --set, for a file people edit: the resolved arch, except that
    what the inputs derive stays derived. The node is written once (top-level node_nm); bandwidths given in GB/s stay
    in GB/s (bytes per cycle would not follow an edited clock); with energy.defaults, only the energy entries the
    input gives are written, and the model's entries come back apart (the loader re-derives them from node_nm)."""
    raw, source = raw_arch(spec)
    if overrides:
        raw = apply_overrides(raw, overrides)
    arch = arch_from_dict(raw, source)
    d = arch_to_dict(arch)
    node = d.get("node_nm")
    area = d.get("area")
    if node is not None and area is not None and area.get("node_nm") == node:
        rest = {k: v for k, v in area.items() if k != "node_nm"}
        d["area"] = None if rest == {k: v for k, v in vars(AreaTable()).items() if k != "node_nm"} else rest
    if d["area"] is None:
        del d["area"]
    energy = d["energy"]
    derived: dict[str, Raw] = {}
    if energy.get("defaults") is not None:
        defaults = energy["defaults"]
        if defaults.get("node_nm") == node:
            del defaults["node_nm"]
        given = raw.get("energy", {}).get("actions") or {}
        derived = {k: v for k, v in energy["actions"].items() if k not in given}
        energy["actions"] = {k: v for k, v in energy["actions"].items() if k in given}
    raw_levels = {lv.get("name"): lv for lv in raw.get("memory", []) if isinstance(lv, dict)}
    d["memory"] = [_with_units(_bandwidth_as_given(lv, raw_levels.get(lv["name"], {}))) for lv in d["memory"]]
    d = _with_units(d)
    order = ["name", "description", "clock_hz", "node_nm"]          # the node next to the clock, where people look
    return {k: d[k] for k in order if k in d} | {k: v for k, v in d.items() if k not in order}, derived


def _with_units(d: Raw) -> Raw:
    """Sizes and clocks of one mapping with their unit where that is exact: 524288 -> '512 KiB', 8e8 -> '800 MHz'."""
    return {k: _unit_text(k, v) for k, v in d.items()}


def _unit_text(key: str, value: Any) -> Any:
    """A `*_bytes` or `*_hz` value as '<whole number> <unit>' in the largest unit that divides it exactly, else as it
    is."""
    units = (((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB"),
              (1e3, "kB")) if key.endswith("_bytes") else
             ((1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz")) if key.endswith("_hz") else ())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value:
        return value
    exact = [(value / factor, unit) for factor, unit in units if value / factor >= 1 and (value / factor).is_integer()]
    if not exact:
        return value
    n, unit = min(exact)                # the fewest digits: 80 GB, not 78125000 KiB
    return f"{int(n)} {unit}"


def _bandwidth_as_given(level: Raw, raw_level: Raw) -> Raw:
    """A level with bandwidth_gb_s in place of bandwidth_bytes_per_cycle when the input gave GB/s."""
    if "bandwidth_gb_s" not in raw_level:
        return level
    return {("bandwidth_gb_s" if k == "bandwidth_bytes_per_cycle" else k):
            (raw_level["bandwidth_gb_s"] if k == "bandwidth_bytes_per_cycle" else v) for k, v in level.items()}


def editable_yaml(spec: str, overrides: list[str] | None = None) -> str:
    """`tilesim show-arch` YAML: editable_arch's mapping, then its derived energy entries as comments."""
    d, derived = editable_arch(spec, overrides)
    text: str = yaml.safe_dump(d, sort_keys=False, width=120, allow_unicode=True)
    if not derived:
        return text
    node = d["energy"]["defaults"].get("node_nm", d.get("node_nm"))
    lines = [f"# energy.actions derived by the energy model (arch/energy_model.py) at {node:g} nm from node_nm and "
             "energy.defaults:", "# not written above, so the loader derives them again from what you edit; to pin "
             "one, copy its line under energy.actions."]
    lines += ["#   " + yaml.safe_dump({k: v}, default_flow_style=True, width=10_000, allow_unicode=True).strip()[1:-1]
              for k, v in derived.items()]
    return text + "\n".join(lines) + "\n"
