"""Data types: the one table of what tilesim knows about each element type (width, integer or float, significand).

Everything else about data types is derived from it: bytes per element (DTYPE_BYTES), the MAC energy and area
rules (arch/energy_model.py, arch/area_model.py scale with the significand width) and tensor sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

IntCount = TypeVar("IntCount", int, npt.NDArray[np.int64])
DType = Literal["int4", "int8", "fp8", "int16", "bf16", "fp16", "int32", "fp32"]


@dataclass(frozen=True)
class DTypeInfo:
    """One element type: storage width in bits, whether it is floating point, and its significand width (the
    hidden bit included; an integer's significand is all of its bits)."""
    bits: int
    is_float: bool
    significand_bits: int

    @property
    def size_bytes(self) -> float:
        """Bytes per element: an int for whole bytes (exact integer arithmetic), 0.5 for int4."""
        return self.bits // 8 if self.bits % 8 == 0 else self.bits / 8


DTYPES: dict[str, DTypeInfo] = {
    "int4": DTypeInfo(4, False, 4),
    "int8": DTypeInfo(8, False, 8),
    "fp8": DTypeInfo(8, True, 4),          # e4m3
    "int16": DTypeInfo(16, False, 16),
    "bf16": DTypeInfo(16, True, 8),
    "fp16": DTypeInfo(16, True, 11),
    "int32": DTypeInfo(32, False, 32),
    "fp32": DTypeInfo(32, True, 24),
}

# Bytes per element of each data type the model knows.
DTYPE_BYTES: dict[str, float] = {name: t.size_bytes for name, t in DTYPES.items()}


def tensor_bytes(elements: IntCount, dtype: str) -> IntCount:
    """Bytes of `elements` elements of `dtype` (a count or an int64 array of counts), rounded up to whole bytes:
    int4 packs two per byte. Exact integer arithmetic, without products that could pass 2**63."""
    bits = DTYPES[dtype].bits
    return elements * (bits // 8) if bits >= 8 else -(-elements // (8 // bits))


__all__ = ["DTYPES", "DTYPE_BYTES", "DType", "DTypeInfo", "tensor_bytes"]
