"""Systems of many chips: the chip (an arch preset or YAML), how many, the topology and the links between them.

A `system:` YAML file refers to a chip arch and describes the interconnect (docs/scale-out.md):

    system:
      name: 8xh100
      chip: h100                  # a preset name or an arch YAML (relative paths: to this file)
      chip_overrides: []          # dotted-path --set overrides applied to the chip
      chips: 8
      topology: switch            # ring | torus2d | torus3d | switch | hierarchical
      dims: []                    # torus: chips along each dimension (product = chips)
      link: nvlink4               # a LINKS name, or {bandwidth_gb_s, latency_us, pj_per_bit, source}
      chips_per_node: 0           # hierarchical: chips in a node (joined by `link`); nodes joined by `network`
      network: ib-ndr             # hierarchical: the slower link between nodes

Bandwidth is per chip and per direction: what one chip can inject into the fabric (switch, network) or into each
neighbour link (ring, torus). Latency is one message's end-to-end start-up time (the alpha of the alpha-beta
model); energy per bit is end to end for one bit moved between two chips (SerDes, switch, NIC, optics).
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from tilesim.arch.config import ArchConfig
from tilesim.arch.errors import InputError, allowed_list, did_you_mean
from tilesim.arch.loader import build, load_arch, load_yaml_text

Topology = Literal["ring", "torus2d", "torus3d", "switch", "hierarchical"]
TOPOLOGIES: tuple[str, ...] = typing.get_args(Topology)
TORUS_DIMS = {"torus2d": 2, "torus3d": 3}


@dataclass(frozen=True)
class Link:
    """A chip-to-chip link class: bandwidth per chip per direction, message latency, end-to-end energy per bit."""
    bandwidth_gb_s: float        # GB/s (1e9 B/s) per chip per direction (per neighbour link on a ring or torus)
    latency_us: float            # alpha: start-up time of one message, end to end
    pj_per_bit: float            # energy of one bit moved from chip to chip
    source: str = ""
    name: str = "custom"

    def __post_init__(self) -> None:
        for f in ("bandwidth_gb_s", "latency_us", "pj_per_bit"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v)) or v < 0 or (f == "bandwidth_gb_s" and v <= 0):
                raise InputError([(f"link.{f}", f"must be a finite number {'> 0' if f == 'bandwidth_gb_s' else '>= 0'}"
                                                f", got {v!r}")])

    @property
    def bytes_per_s(self) -> float:
        """Bandwidth in bytes per second."""
        return self.bandwidth_gb_s * 1e9

    @property
    def latency_s(self) -> float:
        """Start-up time in seconds."""
        return self.latency_us * 1e-6


# Sourced link classes. Bandwidth: per chip, per direction. Energy per bit: the interface's published figure where
# there is one, else the powered parts (SerDes, switch, NIC) divided by their bit rate, as the source line shows.
LINKS: dict[str, Link] = {
    "nvlink4": Link(
        450.0, 2.0, 5.5, name="nvlink4",
        # H100 SXM: 18 NVLink 4 links x 25 GB/s per direction = 450 GB/s (900 GB/s bidirectional), through NVSwitch
        # (NVIDIA H100 whitepaper 2022). Latency: ~2 us NCCL small-message all-reduce step on DGX H100 (NCCL tests;
        # nvidia-smi topology notes give 1-2 us). Energy: off-package 100G-class PAM4 SerDes ~5.5 pJ/bit (NVIDIA's
        # comparison with NVLink-C2C, 1.3 pJ/bit, Hot Chips 2022), switch traversal not counted separately.
        source="NVIDIA H100 whitepaper (18 x 25 GB/s per direction); SerDes 5.5 pJ/bit (NVLink-C2C comparison, "
               "Hot Chips 2022); ~2 us NCCL step latency"),
    "pcie5": Link(
        64.0, 5.0, 5.5, name="pcie5",
        # PCIe 5.0 x16: 32 GT/s x 16 lanes x 128/130 = 63 GB/s per direction (PCI-SIG). Latency: GPU peer to peer
        # through a host bridge or switch, 2-5 us per message (NCCL over PCIe); 5 us assumed. Energy: a 32 Gb/s
        # NRZ SerDes at ~5 pJ/bit, as for NVLink's SerDes class.
        source="PCI-SIG PCIe 5.0 x16 (32 GT/s, 128b/130b); SerDes ~5.5 pJ/bit; 5 us peer-to-peer message latency"),
    "tpu-v4-ici": Link(
        50.0, 1.0, 5.0, name="tpu-v4-ici",
        # TPU v4: 6 ICI links per chip (3-D torus), 400 Gb/s = 50 GB/s per link per direction (Jouppi et al.,
        # ISCA 2023; Google Cloud TPU v4 docs). Latency: sub-microsecond hop, ~1 us message start-up assumed. Energy:
        # electrical/optical SerDes ~5 pJ/bit assumed (the paper gives the OCS at < 3% of system power, no pJ/bit).
        source="Jouppi et al. ISCA 2023 (6 ICI links, 400 Gb/s each direction); ~1 us start-up and 5 pJ/bit "
               "assumed"),
    "ib-ndr": Link(
        50.0, 5.0, 40.0, name="ib-ndr",
        # InfiniBand NDR: 400 Gb/s = 50 GB/s per port per direction, one ConnectX-7 NIC per GPU as in DGX H100.
        # Latency: ~1 us NIC to NIC plus ~0.6 us per switch hop; 5 us per NCCL message step over IB assumed.
        # Energy: ConnectX-7 ~25 W for 2 x 400 Gb/s directions (31 pJ/bit) + a Quantum-2 switch share (~1.7 kW for
        # 64 ports x 400 Gb/s x 2 directions, 33 pJ/bit) + optics; 40 pJ/bit end to end per bit assumed from these.
        source="NVIDIA ConnectX-7 / Quantum-2 datasheets (400 Gb/s, NIC ~25 W, switch ~1.7 kW); 5 us NCCL step"),
    "ethernet-400g": Link(
        50.0, 10.0, 40.0, name="ethernet-400g",
        # 400GbE RoCE: 50 GB/s per port per direction; 2-10 us per message through a Clos fabric (10 us assumed);
        # energy as InfiniBand NDR (NIC + switch + optics, same SerDes generation).
        source="IEEE 802.3bs 400GbE (50 GB/s); RoCE message latency 2-10 us; energy as ib-ndr"),
    "edge-lpddr-link": Link(
        4.0, 2.0, 10.0, name="edge-lpddr-link",
        # A 4-lane 8 Gb/s chip-to-chip SerDes (PCIe 3.0 x4 class, 4 GB/s per direction) as edge NPUs use; 2 us
        # per message through a DMA engine; ~10 pJ/bit for short-reach low-power SerDes of that class (assumed).
        source="PCIe 3.0 x4 class (8 GT/s x 4 lanes, 4 GB/s); ~10 pJ/bit and 2 us assumed for edge SerDes"),
}


@dataclass(frozen=True)
class SystemConfig:
    """Chips of one arch joined by links in a topology; chips are numbered 0..chips-1 along the topology."""
    name: str
    chip: ArchConfig
    chips: int
    topology: str
    link: Link
    dims: tuple[int, ...] = ()           # torus2d / torus3d: chips along each dimension
    chips_per_node: int = 0              # hierarchical: chips per node (joined by `link`)
    network: Link | None = None          # hierarchical: between nodes, one port per chip
    description: str = ""

    @property
    def nodes(self) -> int:
        """Nodes of a hierarchical system (1 otherwise)."""
        return self.chips // self.chips_per_node if self.topology == "hierarchical" else 1


@dataclass(frozen=True)
class SystemSpec:
    """A `system:` mapping as written, before the chip is loaded and the links resolved."""
    chip: str
    chips: int
    topology: str
    name: str = "system"
    description: str = ""
    chip_overrides: tuple[str, ...] = ()
    dims: tuple[int, ...] = ()
    chips_per_node: int = 0
    network: str | None = None          # checked for presence; the value (a name or a mapping) by _link


def _link(value: Any, where: str) -> Link:
    """A link class by name (LINKS) or as a mapping {bandwidth_gb_s, latency_us, pj_per_bit, source}."""
    if isinstance(value, str):
        if value not in LINKS:
            raise InputError([(where, f"unknown link '{value}'{did_you_mean(value, LINKS)}; allowed: "
                                      f"{allowed_list(LINKS)}, or a mapping {{bandwidth_gb_s, latency_us, "
                                      "pj_per_bit}")])
        return LINKS[value]
    if isinstance(value, dict):
        try:
            link = build(Link, value, where)   # raises on any problem (no error list given)
            assert link is not None
            return link
        except InputError as e:    # Link's own checks name fields without the path
            raise InputError([(p if p.startswith(where) else f"{where}.{p.removeprefix('link.')}", m)
                              for p, m in e.problems]) from None
    raise InputError([(where, f"expected a link name ({allowed_list(LINKS)}) or a mapping, got {value!r}")])


def system_problems(spec: SystemSpec) -> list[tuple[str, str]]:
    """Every problem of a system spec's sizes and topology, by field."""
    errors: list[tuple[str, str]] = []
    if spec.chips < 1:
        errors.append(("system.chips", f"must be >= 1, got {spec.chips}"))
    if spec.topology not in TOPOLOGIES:
        errors.append(("system.topology", f"got '{spec.topology}', allowed: {', '.join(TOPOLOGIES)}"))
    want = TORUS_DIMS.get(spec.topology)
    if want and (len(spec.dims) != want or min(spec.dims, default=0) < 1 or math.prod(spec.dims) != spec.chips):
        errors.append(("system.dims", f"{spec.topology} needs {want} dimensions >= 1 whose product is chips "
                                      f"({spec.chips}), got {list(spec.dims)}"))
    if not want and spec.dims:
        errors.append(("system.dims", f"only for torus2d and torus3d, not {spec.topology}"))
    if spec.topology == "hierarchical":
        if spec.chips_per_node < 1 or spec.chips % spec.chips_per_node:
            errors.append(("system.chips_per_node", f"a hierarchical system needs chips_per_node >= 1 dividing chips "
                                                    f"({spec.chips}), got {spec.chips_per_node}"))
        if spec.network is None:
            errors.append(("system.network", "a hierarchical system needs the link between nodes (e.g. ib-ndr)"))
    elif spec.chips_per_node or spec.network is not None:
        errors.append(("system.chips_per_node", "chips_per_node and network are only for topology hierarchical"))
    return errors


def system_from_dict(raw: Any, source: str = "system", base: Path | None = None,
                     overrides: tuple[str, ...] = ()) -> SystemConfig:
    """A SystemConfig from a parsed `system:` file (`overrides`: more --set overrides for the chip); every problem
    named by its field, on one line."""
    if not isinstance(raw, dict) or set(raw) != {"system"}:
        raise InputError(f"{source}: expected one top-level key 'system' (a mapping), got "
                         f"{sorted(raw) if isinstance(raw, dict) else type(raw).__name__}")
    body = dict(raw["system"]) if isinstance(raw["system"], dict) else raw["system"]
    links = {k: body.pop(k) for k in ("link", "network") if isinstance(body, dict) and k in body}
    try:
        built = build(SystemSpec, body, "system")   # raises on any problem (no error list given)
        assert built is not None
        spec = replace(built, network="given" if "network" in links else None)
    except InputError as e:
        raise InputError([(f"{source}: {p}", m) for p, m in e.problems]) from None
    problems = system_problems(spec)
    if problems:
        raise InputError([(f"{source}: {p}", m) for p, m in problems])
    chip_spec = spec.chip
    if base is not None and Path(chip_spec).suffix.lower() in (".yaml", ".yml") and not Path(chip_spec).is_absolute():
        chip_spec = str(base / chip_spec)
    try:
        chip = load_arch(chip_spec, [*spec.chip_overrides, *overrides])
    except InputError as e:
        raise InputError(f"{source}: system.chip '{spec.chip}': {e}") from None
    try:
        link = _link(links.get("link", "nvlink4"), "system.link")
        network = _link(links["network"], "system.network") if "network" in links else None
    except InputError as e:
        raise InputError([(f"{source}: {p}", m) for p, m in e.problems]) from None
    return SystemConfig(spec.name, chip, spec.chips, spec.topology, link, tuple(spec.dims), spec.chips_per_node,
                        network, spec.description)


SYSTEM_PRESETS = "systems"     # arch/presets/systems/*.yaml (package data)


def system_preset_names() -> list[str]:
    """Names of the built-in systems (arch/presets/systems/*.yaml)."""
    files = resources.files("tilesim.arch.presets").joinpath(SYSTEM_PRESETS).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def override_system(raw: Any, overrides: tuple[tuple[str, Any], ...], label: str = "--grid") -> Any:
    """A parsed `system:` file with dotted fields set (e.g. ('link.bandwidth_gb_s', 900)); a link given by name
    becomes its LINKS mapping first, so one of its fields can change (and its name says so). Unknown fields are
    caught by system_from_dict, which names them."""
    if not isinstance(raw, dict) or not isinstance(raw.get("system"), dict):
        return raw
    body = dict(raw["system"])
    for key, value in overrides:
        parts = key.split(".")
        if parts[0] in ("link", "network") and len(parts) > 1 and isinstance(body.get(parts[0]), str) \
                and body[parts[0]] in LINKS:
            ln = LINKS[body[parts[0]]]
            body[parts[0]] = {"bandwidth_gb_s": ln.bandwidth_gb_s, "latency_us": ln.latency_us,
                              "pj_per_bit": ln.pj_per_bit, "source": ln.source, "name": f"{ln.name}*"}
        node = body
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                raise InputError(f"{label} system.{key}: 'system.{part}' is not a group of fields")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return {"system": body}


def load_system(spec: str, overrides: tuple[str, ...] = (),
                system_overrides: tuple[tuple[str, Any], ...] = ()) -> SystemConfig:
    """A system preset name or `system:` YAML file, loaded and checked; `overrides` (--set) apply to the chip,
    `system_overrides` (dotted field, value) to the `system:` mapping (override_system)."""
    if spec in system_preset_names():
        text = resources.files("tilesim.arch.presets").joinpath(SYSTEM_PRESETS, f"{spec}.yaml").read_text()
        raw = override_system(load_yaml_text(text, f"system {spec}"), system_overrides)
        return system_from_dict(raw, f"system {spec}", None, overrides)
    path = Path(spec)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        names = system_preset_names()
        raise InputError([("system", f"unknown system preset or file '{spec}'{did_you_mean(spec, names)}; presets: "
                                     f"{', '.join(names)}, or a .yaml file with a top-level 'system:'")])
    raw = override_system(load_yaml_text(path.read_text(), str(path)), system_overrides)
    return system_from_dict(raw, str(path), path.parent, overrides)


def single_chip(arch: ArchConfig) -> SystemConfig:
    """A system of one chip (no links used): the single-chip run as a system."""
    return SystemConfig(arch.name, arch, 1, "switch", LINKS["nvlink4"], description="one chip")

