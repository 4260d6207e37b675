"""Accelerator descriptions: frozen dataclasses, presets, and the strict YAML loader."""
from tilesim.arch.config import (
                     DTYPE_BYTES,
                     OPERANDS,
                     ArchConfig,
                     EnergyEntry,
                     EnergyTable,
                     MemLevel,
                     PEArray,
                     VectorUnit,
)
from tilesim.arch.errors import ArchWarning, InputError
from tilesim.arch.loader import apply_overrides, arch_from_dict, arch_to_dict, load_arch, preset_names

__all__ = [
                     "DTYPE_BYTES",
                     "OPERANDS",
                     "ArchConfig",
                     "ArchWarning",
                     "EnergyEntry",
                     "EnergyTable",
                     "InputError",
                     "MemLevel",
                     "PEArray",
                     "VectorUnit",
                     "apply_overrides",
                     "arch_from_dict",
                     "arch_to_dict",
                     "load_arch",
                     "preset_names",
]
