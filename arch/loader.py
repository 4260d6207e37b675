"""Strict YAML -> ArchConfig: rejects unknown and duplicate keys and wrong types; reports every problem by dotted
path."""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tilesim.arch.config import (
    OPERANDS,
    ArchConfig,
    AreaTable,
    Dvfs,
    EnergyDefaults,
    EnergyEntry,
    EnergyTable,
    MemLevel,
    PEArray,
    PowerSpec,
    StaticPower,
    VectorUnit,
    accepted_keys,
)
from tilesim.arch.dtypes import DTYPES
from tilesim.arch.energy_model import action_names, default_actions, static_component_names
from tilesim.arch.errors import InputError, allowed_list, arch_warning, did_you_mean, field_error
from tilesim.arch.scalesim_cfg import load_cfg
from tilesim.arch.sparsity import pattern_errors
from tilesim.arch.units import parse_bytes, parse_bytes_per_s, parse_hz

MAX_ARRAY_DIM = 65536          # rows or cols beyond this are surely a typo
MAX_CAPACITY_BYTES = 2**50     # 1 PiB
# Ranges that keep every derived number finite and every cycle count within 64 bits (tests/test_numeric_safety.py)
MAX_CLOCK_HZ = 1e15
BANDWIDTH_RANGE = (1e-12, 1e15)  # bytes per cycle
MAX_LATENCY_CYCLES = 2**32
MAX_PJ = 1e12                  # per action; 1 J
MAX_MW = 1e12                  # static power; 1 GW
NODE_NM_RANGE = (0.1, 1000.0)  # process node (nm) of the energy and area models: their scaling laws overflow far out
Raw = dict[str, Any]                 # a parsed YAML mapping, before validation
Problems = list[tuple[str, str]]      # (dotted field path, what is wrong)
T = TypeVar("T")
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")   # YAML 1.1 reads 1e-9 as a string


# Resource limits of a YAML document (docs/design.md section 8): arch files and pinned mappings are a few KiB;
# these bounds refuse "billion laughs" documents (aliases that expand exponentially: a 2.4 KB file would build
# billions of nodes when copied) and nesting that would exhaust the parser's recursion.
MAX_YAML_BYTES = 1 << 20        # 1 MiB of text
MAX_YAML_NODES = 100_000        # nodes after expanding every alias (the presets have about 300)
MAX_YAML_DEPTH = 64             # nested collections (the presets nest 5 deep)


class _Resolver(yaml.resolver.Resolver):  # type: ignore[misc]  # PyYAML ships no types
    """YAML 1.1's implicit types without its base-60 numbers: `1:30` stays a string (YAML 1.1 reads 90, YAML 1.2
    and every other modern reader a string), so a typo is refused instead of taking another meaning."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()}
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"""^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$""", re.X),
    list("-+0123456789"))
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


class _UniqueKeyLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,  # type: ignore[misc]
                       yaml.constructor.SafeConstructor, _Resolver):  # type: ignore[misc]
    """SafeLoader (without base-60 numbers) that refuses duplicate and unhashable mapping keys instead of keeping
    the last one or failing inside PyYAML."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)


def _construct_mapping(loader: yaml.SafeLoader, node: Any, deep: bool = False) -> Any:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise InputError(f"line {key_node.start_mark.line + 1}: a mapping key must be a scalar (a name or a "
                             f"number), got a {type(key).__name__}") from None
        if key in seen:
            raise InputError(f"line {key_node.start_mark.line + 1}: duplicate key '{key}'")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_size(root: Any) -> None:
    """InputError when the composed document is nested deeper than MAX_YAML_DEPTH or, with every alias expanded,
    has more than MAX_YAML_NODES nodes. Expanded sizes are counted once per distinct node (an alias points at a
    node already counted), so the check takes time in the document's text, not in its expansion."""
    expanded: dict[int, int] = {}
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if id(node) in expanded:
            continue
        if depth > MAX_YAML_DEPTH:
            raise InputError(f"line {node.start_mark.line + 1}: nested more than {MAX_YAML_DEPTH} levels deep")
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else \
            list(node.value) if isinstance(node, yaml.SequenceNode) else []
        if not children_done and any(id(c) not in expanded for c in children):
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in expanded)
            continue
        expanded[id(node)] = 1 + sum(expanded.get(id(c), 1) for c in children)
        if expanded[id(node)] > MAX_YAML_NODES:
            raise InputError(f"more than {MAX_YAML_NODES:,} values once its aliases (*name) are expanded; an arch "
                             "file needs a few hundred")


def load_yaml_text(text: str, source: str) -> object:
    """Parse YAML with duplicate-key detection and size limits; errors name the source and line."""
    if len(text) > MAX_YAML_BYTES:
        raise InputError(f"{source}: {len(text):,} characters, more than the {MAX_YAML_BYTES:,} a YAML input may "
                         "have")
    loader = None
    try:
        loader = _UniqueKeyLoader(text)             # the reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except InputError as e:
        raise InputError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f": line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e).splitlines()[0]
        raise InputError(f"{source}{where}: malformed YAML ({problem})") from None
    except RecursionError:
        raise InputError(f"{source}: nested more than {MAX_YAML_DEPTH} levels deep") from None
    except (ValueError, OverflowError) as e:      # e.g. an integer of more than 4,300 digits
        raise InputError(f"{source}: malformed YAML ({str(e).splitlines()[0]})") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_text(path: Path, field: str) -> str:
    """A file's text for an input named by `field`: unreadable or non-UTF-8 files are one-line InputErrors."""
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES and path.suffix.lower() in (".yaml", ".yml"):
            raise field_error(field, f"'{path}' has {size:,} bytes, more than the {MAX_YAML_BYTES:,} a YAML input "
                                     "may have")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise field_error(field, f"cannot read '{path}': not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise field_error(field, f"cannot read '{path}': {e.strerror or e}") from None


# ---------------------------------------------------------------- generic dataclass builder

def _convert(value: Any, tp: Any, path: str, field_name: str, errors: Problems) -> Any:
    """Convert a YAML value to type `tp`, appending (path, message) to errors on failure."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):           # X | None: null, or an X
        (inner,) = [t for t in typing.get_args(tp) if t is not type(None)]
        return None if value is None else _convert(value, inner, path, field_name, errors)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            errors.append((path, f"got {value!r}, allowed: {', '.join(map(str, allowed))}"))
        return value
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            errors.append((path, f"expected a list, got {type(value).__name__}"))
            return ()
        return tuple(_convert(v, item_tp, f"{path}[{i}]", field_name, errors) for i, v in enumerate(value))
    if origin is dict:
        _, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            errors.append((path, f"expected a mapping, got {type(value).__name__}"))
            return {}
        return {str(k): _convert(v, item_tp, f"{path}.{k}", str(k), errors) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, path, errors)
    if field_name.endswith(("_bytes", "_hz")):
        return _convert_unit(value, path, field_name, errors)
    return _convert_scalar(value, tp, path, errors)


def _convert_unit(value: Any, path: str, field_name: str, errors: Problems) -> int | float:
    """A size in bytes (`*_bytes`: whole bytes, units such as KiB allowed) or a frequency (`*_hz`: MHz, GHz)."""
    try:
        if field_name.endswith("_bytes"):
            v = parse_bytes(value)
            if not math.isfinite(v):
                raise ValueError(f"expected a finite number of bytes, got {value!r}")
            if v != int(v):
                raise ValueError(f"expected a whole number of bytes, got {value!r}")
            return int(v)
        return parse_hz(value)
    except ValueError as e:
        errors.append((path, str(e)))
        return 0


def _convert_scalar(value: Any, tp: Any, path: str, errors: Problems) -> Any:
    """A bool, int, float (numeric strings such as '1e-9' too) or str."""
    if tp is bool:
        if not isinstance(value, bool):
            errors.append((path, f"expected true or false, got {value!r}"))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append((path, f"expected an integer, got {value!r}"))
            return 0
        return value
    if tp is float:
        if isinstance(value, str) and _NUMBER.match(value) and math.isfinite(float(value)):   # not '1e400'
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append((path, f"expected a number, got {value!r}"))
            return 0.0
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append((path, f"expected a string, got {value!r}"))
        return str(value)
    raise TypeError(f"unsupported field type {tp}")  # a bug in our dataclasses, not user input


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A config dataclass's field types (resolved once per class: sweeps build an arch per design point)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def build(cls: type[T], data: Any, path: str = "", errors: Problems | None = None) -> T | None:
    """Build dataclass `cls` from a mapping, checking keys and types; raises InputError listing every problem."""
    top = errors is None
    if errors is None:
        errors = []
    where = path or cls.__name__
    if not isinstance(data, dict):
        errors.append((where, f"expected a mapping, got {type(data).__name__}"))
        if top:
            raise InputError(errors)
        return None
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a config dataclass
    accepted = accepted_keys(cls)
    for key in data:
        if key not in fields:
            errors.append((f"{path}.{key}" if path else str(key),
                           f"unknown field{did_you_mean(str(key), accepted)}; allowed: {allowed_list(accepted)}"))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], sub, name, errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append((sub, "required field is missing"))
    if top and errors:
        raise InputError(errors)
    try:
        return cls(**kwargs) if not errors else None
    except TypeError:
        return None


# ---------------------------------------------------------------- arch-specific steps

def _normalize_memory(raw: Raw, errors: Problems) -> None:
    """Turn `bandwidth_gb_s` into `bandwidth_bytes_per_cycle` with the clock (in place)."""
    try:
        clock = parse_hz(raw.get("clock_hz", 0))
    except ValueError:
        return  # reported when the clock is converted
    levels = raw.get("memory")
    if not isinstance(levels, list):
        return
    for i, level in enumerate(levels):
        if not isinstance(level, dict) or "bandwidth_gb_s" not in level:
            continue
        name = level.get("name", i)
        if "bandwidth_bytes_per_cycle" in level:
            errors.append((f"memory.{name}", "give bandwidth_gb_s or bandwidth_bytes_per_cycle, not both"))
            continue
        gbs = level.pop("bandwidth_gb_s")
        try:
            bytes_per_s = parse_bytes_per_s(f"{gbs} GB/s" if not isinstance(gbs, str) else gbs)
        except ValueError as e:
            errors.append((f"memory.{name}.bandwidth_gb_s", str(e)))
            continue
        # without a valid clock the conversion is meaningless; validation then reports clock_hz itself
        level["bandwidth_bytes_per_cycle"] = bytes_per_s / clock if clock > 0 else 1.0


def _node_value(value: Any) -> float | None:
    """A node in nm as a number (numeric strings too), or None when it is not one (the builder reports it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _resolve_node(raw: Raw, errors: Problems) -> None:
    """One node setting (in place): the top-level `node_nm` feeds the area model (area.node_nm, creating the area
    section) and the energy model's defaults (energy.defaults.node_nm, when the arch has energy.defaults). The old
    spellings alone still load, with a deprecation warning, and give the top-level node; area.node_nm that differs
    from node_nm is an error. energy.defaults.node_nm may differ on purpose: energy figures taken at another node
    than the chip's (gemmini: Horowitz's 45 nm values on a 22 nm chip)."""
    energy = raw.get("energy")
    defaults = energy.get("defaults") if isinstance(energy, dict) else None
    defaults = defaults if isinstance(defaults, dict) else None
    area = raw.get("area")
    area = area if isinstance(area, dict) else None
    top = _node_value(raw.get("node_nm"))
    if top is None:
        if "node_nm" in raw:
            return                          # not a number: the builder reports node_nm
        old = [(path, section["node_nm"]) for path, section in (("area.node_nm", area),
                                                                ("energy.defaults.node_nm", defaults))
               if section is not None and "node_nm" in section]
        if len(old) == 2 and _node_value(old[0][1]) != _node_value(old[1][1]):
            old = old[:1]                   # the energy node differs: it stays, as the energy figures' own node
        for path, value in old:
            arch_warning(f"{path} is deprecated: give the process node once, as `node_nm: {value}` at the top level "
                         "(it feeds the energy and area models)")
        node = _node_value(old[0][1]) if old else None
        if node is not None and NODE_NM_RANGE[0] <= node <= NODE_NM_RANGE[1]:
            raw["node_nm"] = node           # the chip's node: the area's when given (out of range: reported there)
        return
    if not NODE_NM_RANGE[0] <= top <= NODE_NM_RANGE[1]:
        return                              # validation reports node_nm; nothing derives from it
    if area is not None and "node_nm" in area:
        given = _node_value(area["node_nm"])
        if given is not None and given != top and NODE_NM_RANGE[0] <= given <= NODE_NM_RANGE[1]:
            errors.append(("area.node_nm", f"{given:g} conflicts with node_nm {top:g}: give the node once, as "
                                           "node_nm at the top level"))
    elif area is not None:
        area["node_nm"] = top
    else:
        raw["area"] = {"node_nm": top}
    if defaults is not None:
        defaults.setdefault("node_nm", top)


def _fill_energy_defaults(raw: Raw, errors: Problems) -> None:
    """With `energy.defaults: {node_nm, offchip}`, add the model's entry for every action the arch leaves out
    (in place); the entries the arch lists stay as they are."""
    energy = raw.get("energy")
    if not isinstance(energy, dict) or not isinstance(energy.get("defaults"), dict):
        return
    spec = build(EnergyDefaults, energy["defaults"], "energy.defaults", errors)
    if spec is None:
        return
    if spec.node_nm is None:
        errors.append(("energy.defaults", "needs the process node: give node_nm at the top level"))
        return
    if not NODE_NM_RANGE[0] <= spec.node_nm <= NODE_NM_RANGE[1]:
        errors.append(("energy.defaults.node_nm", f"must be a finite number > 0, between {NODE_NM_RANGE[0]:g} and "
                                                  f"{NODE_NM_RANGE[1]:g} nm, got {spec.node_nm:g}"))
        return
    try:
        model = default_actions(raw, spec.node_nm, spec.offchip or None, spec.flash or None,
                                spec.register_clock_in_static)
    except InputError as e:
        errors.extend(e.problems)
        return
    actions = energy.get("actions")
    given: Raw = actions if isinstance(actions, dict) else {}
    merged = {**model, **given}
    for action, entry in given.items():      # a partial entry (e.g. --set energy.actions.mac.int8.pj=0.1) keeps
        if action in model and isinstance(entry, dict) and "source" not in entry:        # the model's other fields
            base = model[action]
            merged[action] = {**base, **entry,
                              "source": f"set by the arch (model: {base['pj']:g} pJ, {base['source']})"}
    energy["actions"] = merged


def _clock_errors(arch: ArchConfig) -> Problems:
    """clock_hz is positive and within range."""
    if not arch.clock_hz > 0:
        return [("clock_hz", f"must be > 0, got {arch.clock_hz:g}")]
    if not 1 <= arch.clock_hz <= MAX_CLOCK_HZ:
        return [("clock_hz", f"must be between 1 Hz and {MAX_CLOCK_HZ:g} Hz, got {arch.clock_hz:g}")]
    return []


def _engine_errors(arch: ArchConfig) -> Problems:
    """The array's and vector unit's sizes, and the vector unit's row-pass table."""
    errors = []
    for section, unit, fields in (("array", arch.array, ("rows", "cols", "count", "macs_per_pe_cycle")),
                                  ("vector", arch.vector, ("lanes", "ops_per_lane_cycle"))):
        for fname in fields:
            v = getattr(unit, fname)
            if not 1 <= v <= MAX_ARRAY_DIM:
                errors.append((f"{section}.{fname}", f"must be between 1 and {MAX_ARRAY_DIM}, got {v}"))
    for i, entry in enumerate(arch.vector.row_passes):
        if not 1 <= entry.up_to <= 2**40:
            errors.append((f"vector.row_passes[{i}].up_to", f"must be between 1 and 2**40 elements, got {entry.up_to}"))
        if not 1 <= entry.passes <= 16:
            errors.append((f"vector.row_passes[{i}].passes", f"must be between 1 and 16, got {entry.passes:g}"))
    return errors


def _sparsity_errors(arch: ArchConfig) -> Problems:
    """array.sparsity entries are patterns tilesim knows (arch/sparsity.py)."""
    return pattern_errors(arch.array.sparsity, arch.array.rows)


def _energy_errors(arch: ArchConfig) -> Problems:
    """Energy per action and static power in range; static components name real components."""
    errors = []
    energy = arch.energy
    if energy.static_mw_per_mm2 and arch.area is None:
        errors.append(("energy.static_mw_per_mm2", "needs an area section to know the mm^2: give node_nm at the top "
                                                   "level"))
    for fname in ("static_mw", "static_mw_per_mm2"):
        v = getattr(energy, fname)
        if not v < 0 and not v <= MAX_MW:   # NaN too
            errors.append((f"energy.{fname}", f"must be between 0 and {MAX_MW:g}, got {v:g}"))
    for action, entry in energy.actions.items():
        if not 0 <= entry.pj <= MAX_PJ:
            errors.append((f"energy.actions.{action}.pj", f"must be between 0 and {MAX_PJ:g} pJ, got {entry.pj:g}"))
    if energy.static_mw < 0 or energy.static_mw_per_mm2 < 0:
        errors.append(("energy.static_mw", "static power must be >= 0"))
    components = ["array", "vector"] + [lv.name for lv in arch.memory]
    for comp, static in energy.static_components.items():
        if comp not in components:
            errors.append((f"energy.static_components.{comp}", f"no such component{did_you_mean(comp, components)}; "
                                                               f"allowed: {allowed_list(components)}"))
        if not static.mw >= 0:
            errors.append((f"energy.static_components.{comp}.mw", f"must be >= 0, got {static.mw:g}"))
    if energy.defaults and energy.defaults.register_clock_in_static and not energy.static_mw > 0:
        errors.append(("energy.defaults.register_clock_in_static",
                       "needs energy.static_mw > 0: the measured idle power that holds the registers' clock"))
    if energy.charge_idle_pes and "array.idle_pe_cycle" not in energy.actions:
        errors.append(("energy.charge_idle_pes", "needs an energy.actions entry for array.idle_pe_cycle (pJ per idle "
                                                 "PE per cycle), or energy.defaults to fill it"))
    return errors


def _power_errors(arch: ArchConfig) -> Problems:
    """power: TDP and cap are >= 0 watts; a cap needs a DVFS rule whose knee and floor clock lie below clock_hz."""
    p = arch.power
    if p is None:
        return []
    errors: Problems = [(f"power.{f}", f"must be between 0 and {MAX_MW / 1e3:g} W, got {getattr(p, f):g}")
                        for f in ("tdp_w", "cap_w") if not 0 <= getattr(p, f) <= MAX_MW / 1e3]
    if p.cap_w and p.dvfs is None:
        errors.append(("power.dvfs", "a power cap needs a DVFS rule {knee_hz, v_floor, min_hz} to find the clock"))
    d = p.dvfs
    if d is not None:
        if not 0 < d.v_floor <= 1:
            errors.append(("power.dvfs.v_floor", f"must be in (0, 1] (voltage at the knee / at clock_hz), got "
                                                 f"{d.v_floor:g}"))
        if not 0 < d.min_hz <= d.knee_hz <= arch.clock_hz:
            errors.append(("power.dvfs", f"needs 0 < min_hz <= knee_hz <= clock_hz, got min_hz {d.min_hz:g}, "
                                         f"knee_hz {d.knee_hz:g}, clock_hz {arch.clock_hz:g}"))
    return errors


def _area_errors(arch: ArchConfig) -> Problems:
    """The node (top level and area) in range; area overrides finite and not negative."""
    errors: Problems = []
    if arch.node_nm is not None and not NODE_NM_RANGE[0] <= arch.node_nm <= NODE_NM_RANGE[1]:
        return [("node_nm", f"must be > 0, between {NODE_NM_RANGE[0]:g} and {NODE_NM_RANGE[1]:g} nm, got "
                            f"{arch.node_nm:g}")]
    if arch.area is None:
        return errors
    if arch.area.node_nm is None:
        return [("area", "needs the process node: give node_nm at the top level")]
    for fname in ("node_nm", "pe_mm2", "sram_mm2_per_mib", "vector_lane_mm2"):
        v = getattr(arch.area, fname)
        if fname == "node_nm" and not NODE_NM_RANGE[0] <= v <= NODE_NM_RANGE[1]:
            errors.append(("area.node_nm", f"must be > 0, between {NODE_NM_RANGE[0]:g} and {NODE_NM_RANGE[1]:g} nm, "
                                           f"got {v:g}"))
        elif not 0 <= v < float("inf"):
            errors.append((f"area.{fname}", f"must be >= 0, got {v:g}"))
    return errors


def _core_errors(arch: ArchConfig) -> Problems:
    """Core count and per-kernel overhead in range."""
    errors = []
    if not 1 <= arch.cores <= 4096:
        errors.append(("cores", f"must be between 1 and 4096, got {arch.cores}"))
    if not 0 <= arch.kernel_overhead_cycles <= MAX_LATENCY_CYCLES:
        errors.append(("kernel_overhead_cycles", f"must be between 0 and 2**32, got {arch.kernel_overhead_cycles}"))
    return errors


def _hierarchy_errors(arch: ArchConfig) -> Problems:
    """Level order: optional flash, then off-chip, then on-chip levels (sram, at most one cache); unique names."""
    errors: Problems = []
    names = [lv.name for lv in arch.memory]
    for n in set(names):
        if names.count(n) > 1:
            errors.append((f"memory.{n}", "duplicate level name"))
    flash = arch.memory[0].kind == "flash"
    first, rest = (arch.memory[1], arch.memory[2:]) if flash else (arch.memory[0], arch.memory[1:])
    if first.kind != "offchip":
        errors.append((f"memory.{first.name}.kind", "the level after the flash level must be offchip" if flash else
                       "the first (outermost) level must be offchip"))
    for lv in rest:
        if lv.kind == "flash":
            errors.append((f"memory.{lv.name}.kind", "a flash level must be the first (outermost) level"))
        elif lv.kind not in ("sram", "cache"):
            errors.append((f"memory.{lv.name}.kind", "only the first level may be offchip; allowed here: sram, "
                                                       "cache"))
    caches = [lv.name for lv in arch.memory if lv.kind == "cache"]
    if len(caches) > 1:
        errors.append((f"memory.{caches[1]}.kind", f"at most one cache level (already: {caches[0]})"))
    return errors


def _level_errors(lv: MemLevel) -> Problems:
    """One memory level's capacity, bandwidth, latency, resident share and held operands."""
    errors = []
    p = f"memory.{lv.name}"
    if not 0 < lv.capacity_bytes <= MAX_CAPACITY_BYTES:
        errors.append((f"{p}.capacity_bytes", f"must be between 1 and 2**50, got {lv.capacity_bytes}"))
    if not lv.bandwidth_bytes_per_cycle > 0:
        errors.append((f"{p}.bandwidth_bytes_per_cycle", f"must be > 0, got {lv.bandwidth_bytes_per_cycle:g}"))
    elif not BANDWIDTH_RANGE[0] <= lv.bandwidth_bytes_per_cycle <= BANDWIDTH_RANGE[1]:
        errors.append((f"{p}.bandwidth_bytes_per_cycle", f"must be between {BANDWIDTH_RANGE[0]:g} and "
                                                         f"{BANDWIDTH_RANGE[1]:g} bytes/cycle, got "
                                                         f"{lv.bandwidth_bytes_per_cycle:g}"))
    if lv.latency_cycles > MAX_LATENCY_CYCLES:
        errors.append((f"{p}.latency_cycles", f"must be between 0 and 2**32, got {lv.latency_cycles}"))
    if lv.latency_cycles < 0:
        errors.append((f"{p}.latency_cycles", f"must be >= 0, got {lv.latency_cycles}"))
    if lv.resident_fraction and (lv.kind != "sram" or "input" not in lv.holds):
        errors.append((f"{p}.resident_fraction", "only the on-chip level that holds activations (input) keeps them"))
    if not 0 <= lv.resident_fraction < 1:
        errors.append((f"{p}.resident_fraction", f"must be >= 0 and < 1, got {lv.resident_fraction:g}"))
    if not lv.holds:
        errors.append((f"{p}.holds", f"must list at least one of {', '.join(OPERANDS)}"))
    return errors


def _home_errors(arch: ArchConfig) -> Problems:
    """Every operand has exactly one on-chip home level."""
    errors = []
    for op in OPERANDS:
        homes = [lv.name for lv in arch.onchip if op in lv.holds]
        if len(homes) != 1:
            what = "no on-chip level holds it" if not homes else f"held by several levels ({', '.join(homes)})"
            errors.append(("memory", f"operand '{op}' needs exactly one on-chip level: {what}"))
    return errors


def _memory_errors(arch: ArchConfig) -> Problems:
    """The memory hierarchy: its order, flash and burst settings, each level, the operands' homes."""
    if len(arch.memory) < 2:
        return [("memory", "needs an off-chip level followed by at least one on-chip level")]
    return (_hierarchy_errors(arch) + _flash_and_burst_errors(arch)
            + [e for lv in arch.memory for e in _level_errors(lv)] + _home_errors(arch))


# the semantic checks, section by section, in the order their problems are reported
CHECKS = (_clock_errors, _engine_errors, _sparsity_errors, _energy_errors, _power_errors, _area_errors, _core_errors,
          _memory_errors)


def validate(arch: ArchConfig) -> Problems:
    """Semantic checks that types cannot express (positive sizes, one home level per operand): every CHECKS entry's
    problems."""
    return [problem for check in CHECKS for problem in check(arch)]


FLASH_WEIGHTS = ("overflow", "all", "none", "mlp")
MAX_BURST_BYTES = 2**20        # 1 MiB: larger bursts are surely a typo


def _flash_and_burst_errors(arch: ArchConfig) -> list[tuple[str, str]]:
    """Checks of the fields only some kinds use: bursts (off-chip and flash), weight placement and staging (flash)."""
    errors = []
    for lv in arch.memory:
        p = f"memory.{lv.name}"
        if not 1 <= lv.burst_bytes <= MAX_BURST_BYTES:
            errors.append((f"{p}.burst_bytes", f"must be between 1 and {MAX_BURST_BYTES}, got {lv.burst_bytes}"))
        elif lv.kind in ("sram", "cache") and lv.burst_bytes != 1:
            errors.append((f"{p}.burst_bytes", "bursts apply to off-chip and flash levels; leave it at 1 on chip"))
        if lv.kind != "flash":
            for fname, default in (("weights", "overflow"), ("staging_bytes", None)):
                if getattr(lv, fname) != default:
                    errors.append((f"{p}.{fname}", "only a flash level (kind: flash) places weights"))
            continue
        if tuple(lv.holds) != ("weight",):
            errors.append((f"{p}.holds", "a flash level holds weights only: [weight]"))
        if lv.weights not in FLASH_WEIGHTS and not any(c in lv.weights for c in "*?["):
            errors.append((f"{p}.weights", f"got {lv.weights!r}; allowed: {', '.join(FLASH_WEIGHTS)}, or a glob "
                                           "on kernel names such as '*.mlp.*'"))
        if lv.staging_bytes is not None and lv.staging_bytes < 0:
            errors.append((f"{p}.staging_bytes", f"must be >= 0 (or null: no limit), got {lv.staging_bytes}"))
    return errors


PLAUSIBLE_CLOCK_HZ = (1e6, 1e10)    # 1 MHz .. 10 GHz: outside it, a unit is probably missing or wrong
MIN_PLAUSIBLE_BYTES_PER_CYCLE = 1.0


def plausibility_warnings(arch: ArchConfig) -> list[str]:
    """Values that load but are probably not what was meant: each a one-line warning naming the field (a bare clock
    number is Hz, so `--set clock_hz=800` is 800 Hz; bandwidth under a byte per cycle; a float array summing into an
    integer accumulator, or an accumulator narrower than its operands; a TDP below the static power; an on-chip level
    as large as off-chip memory)."""
    out = []
    lo, hi = PLAUSIBLE_CLOCK_HZ
    if not lo <= arch.clock_hz <= hi:
        out.append(f"clock_hz: {arch.clock_hz:g} Hz is {'below 1 MHz' if arch.clock_hz < lo else 'above 10 GHz'}; a "
                   "bare number is Hz: give the unit, e.g. '800 MHz'")
    for lv in arch.memory:
        if lv.bandwidth_bytes_per_cycle < MIN_PLAUSIBLE_BYTES_PER_CYCLE:
            out.append(f"memory.{lv.name}: bandwidth {lv.bandwidth_bytes_per_cycle:.3g} bytes/cycle "
                       f"({lv.bandwidth_bytes_per_cycle * arch.clock_hz / 1e9:.3g} GB/s at clock_hz) is below 1 byte "
                       "per cycle; bandwidth_gb_s is in GB/s, bandwidth_bytes_per_cycle in bytes per clock cycle")
    a = arch.array
    if a.dtype in DTYPES and a.acc_dtype in DTYPES:
        t, acc = DTYPES[a.dtype], DTYPES[a.acc_dtype]
        if t.is_float and not acc.is_float:
            out.append(f"array.acc_dtype: {a.acc_dtype} accumulates {a.dtype} products; a float array needs a float "
                       "accumulator (fp16 or fp32)")
        elif acc.bits < t.bits:
            out.append(f"array.acc_dtype: {a.acc_dtype} is narrower than the {a.dtype} operands it sums")
    if arch.power and arch.power.tdp_w and arch.energy.static_mw > arch.power.tdp_w * 1e3:
        out.append(f"power.tdp_w: {arch.power.tdp_w:g} W is below the chip's static power alone "
                   f"(energy.static_mw {arch.energy.static_mw:g} mW = {arch.energy.static_mw / 1e3:g} W); static_mw is "
                   "in mW")
    offchip = [lv for lv in arch.memory if lv.kind == "offchip"]
    for lv in arch.onchip:
        if offchip and lv.capacity_bytes >= offchip[0].capacity_bytes:
            out.append(f"memory.{lv.name}.capacity_bytes: {lv.capacity_bytes:,} bytes on chip is not smaller than "
                       f"the off-chip {offchip[0].name} ({offchip[0].capacity_bytes:,} bytes); a size without a unit "
                       "is bytes")
    return out


def dtype_warning(arch: ArchConfig, dtype: str | None, flag: str = "--dtype") -> str | None:
    """A warning when a workload computes in a dtype the arch's array does not: a float on an integer array or the
    reverse, or wider than the array's (tilesim still runs its MACs at the array's rate, with mac.<dtype> energy)."""
    a = arch.array.dtype
    if dtype is None or dtype == a or dtype not in DTYPES or a not in DTYPES:
        return None
    t, have = DTYPES[dtype], DTYPES[a]
    if t.is_float == have.is_float and t.bits <= have.bits:
        return None                         # a narrower type of the same kind runs on the wider MACs
    return (f"{flag} {dtype}: {arch.name}'s array computes {a} (array.dtype); its MACs are counted at the {a} rate "
            f"with mac.{dtype} energy; set array.dtype={dtype} if the hardware has {dtype} MACs")


def arch_from_dict(raw: Raw, source: str = "arch") -> ArchConfig:
    """Build and validate an ArchConfig from a parsed YAML mapping."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = _deepcopy(raw)
    errors: Problems = []
    _normalize_memory(raw, errors)
    _resolve_node(raw, errors)
    _fill_energy_defaults(raw, errors)
    arch = build(ArchConfig, raw, "", errors)
    if errors or arch is None:
        raise InputError(errors or [(source, "could not be built")])
    problems = validate(arch)
    if problems:
        raise InputError(problems)
    for line in plausibility_warnings(arch):
        arch_warning(line)
    return arch


def _deepcopy(x: T) -> T:
    if isinstance(x, dict):
        return {k: _deepcopy(v) for k, v in x.items()}  # type: ignore[return-value]  # same type, copied
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]  # type: ignore[return-value]
    return x


# ---------------------------------------------------------------- --set overrides

def apply_overrides(raw: Raw, overrides: list[str], label: str = "--set") -> Raw:
    """Apply `dotted.path=value` overrides to a raw arch mapping; memory levels are addressed by name. Errors name
    each override as `label KEY` (the CLI's --set, the sweep's --grid)."""
    raw = _deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"{label} {item}: expected KEY=VALUE, e.g. array.rows=64")
        key, text = item.split("=", 1)
        value = load_yaml_text(text, f"{label} {key}") if text.strip() else ""
        _set_path(raw, key.strip(), value, label)
    return raw


def _set_path(raw: Raw, key: str, value: Any, label: str) -> None:
    parts = key.split(".")
    if parts[:2] == ["energy", "actions"] and len(parts) >= 4:
        # action names hold one dot (mac.int8, dram.read_byte): energy.actions.<component>.<action>[.<field>]
        parts = [*parts[:2], ".".join(parts[2:4]), *parts[4:]]
    node = raw
    walked: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):  # memory levels, addressed by name
            names = [lv.get("name") for lv in node if isinstance(lv, dict)]
            if part not in names:
                raise InputError(f"{label} {key}: no memory level '{part}'{did_you_mean(part, names)}; "
                                 f"levels: {', '.join(map(str, names))}")
            if last:
                raise InputError(f"{label} {key}: name a field of the level, e.g. {key}.capacity_bytes")
            node = node[names.index(part)]
        elif isinstance(node, dict):
            allowed = _allowed_keys(walked, node, raw)
            if part not in node and part not in allowed:
                raise InputError(f"{label} {key}: no field '{part}'{did_you_mean(part, allowed)}; "
                                 f"allowed: {allowed_list(allowed)}")
            if last:
                if part == "bandwidth_gb_s":
                    node.pop("bandwidth_bytes_per_cycle", None)
                elif part == "bandwidth_bytes_per_cycle":
                    node.pop("bandwidth_gb_s", None)
                elif walked[:2] == ["energy", "actions"] and part == "pj" and isinstance(node.get("source"), str):
                    # the number is no longer theirs
                    node["source"] = f"{label} (was {node.get('pj')} pJ: {node['source']})"
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise InputError(f"{label} {key}: '{'.'.join(walked)}' is a value, not a group of fields")
        walked.append(part)


_SCHEMA = {(): ArchConfig, ("array",): PEArray, ("vector",): VectorUnit, ("energy",): EnergyTable,
           ("energy", "defaults"): EnergyDefaults, ("area",): AreaTable, ("power",): PowerSpec,
           ("power", "dvfs"): Dvfs}


def _allowed_keys(walked: list[str], node: Raw, raw: Raw) -> set[str]:
    """Field names allowed at this point of a --set path (dataclass fields, plus what the mapping has); under
    energy.actions any action the arch can perform, under energy.static_components any of its components."""
    if len(walked) == 2 and walked[0] == "memory":
        return set(accepted_keys(MemLevel))
    if len(walked) >= 2 and walked[:2] == ["energy", "actions"]:
        if len(walked) == 2:
            return set(node) | set(action_names(raw))
        return set(node) | {f.name for f in dataclasses.fields(EnergyEntry)} if len(walked) == 3 else set(node)
    if len(walked) >= 2 and walked[:2] == ["energy", "static_components"]:
        if len(walked) == 2:
            return set(node) | set(static_component_names(raw))
        return set(node) | {f.name for f in dataclasses.fields(StaticPower)} if len(walked) == 3 else set(node)
    cls = _SCHEMA.get(tuple(walked))
    return set(accepted_keys(cls)) if cls else set(node)


# ---------------------------------------------------------------- presets and files

def preset_names() -> list[str]:
    """Names of the built-in presets (arch/presets/*.yaml)."""
    files = resources.files("tilesim.arch.presets").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def raw_arch(spec: str) -> tuple[Raw, str]:
    """Raw mapping and source name for a preset name, a YAML path or a SCALE-Sim .cfg path."""
    if spec in preset_names():
        text = resources.files("tilesim.arch.presets").joinpath(f"{spec}.yaml").read_text()
        source = f"preset {spec}"
    else:
        path = Path(spec)
        if path.suffix.lower() == ".cfg" and path.is_file():
            return load_cfg(path), str(path)  # SCALE-Sim's INI config
        if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
            raise field_error("arch", f"unknown preset or file '{spec}'{did_you_mean(spec, preset_names())}; "
                             f"presets: {', '.join(preset_names())}, or a .yaml file or SCALE-Sim .cfg file")
        text = read_text(path, "arch")
        source = str(path)
    raw = load_yaml_text(text, source)
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw, source


def load_arch(spec: str, overrides: list[str] | None = None) -> ArchConfig:
    """Load a preset name or arch YAML file, apply --set overrides, validate."""
    raw, source = raw_arch(spec)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return arch_from_dict(raw, source)


def arch_to_dict(arch: ArchConfig) -> Raw:
    """Plain mapping of an ArchConfig (round-trips through arch_from_dict)."""
    d = dataclasses.asdict(arch)
    d["memory"] = [dict(lv, holds=list(lv["holds"])) for lv in d["memory"]]
    return d


__all__ = [
    "ArchConfig",
    "EnergyEntry",
    "EnergyTable",
    "MemLevel",
    "PEArray",
    "VectorUnit",
    "apply_overrides",
    "arch_from_dict",
    "arch_to_dict",
    "build",
    "load_arch",
    "load_yaml_text",
    "preset_names",
    "validate",
]
