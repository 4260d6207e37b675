"""Small hand-checkable archs built from plain mappings, shared by the tests."""
from __future__ import annotations

from tilesim.arch import arch_from_dict


def tiny_arch_dict(rows=16, cols=16, dataflow="ws", bw=16, latency=0, sram_bytes=1 << 20, double=True,
                   static_mw=0.0, vector_lanes=16) -> dict:
    """A 1 GHz arch with one unified SRAM; every energy entry is 1 pJ so counts can be read off energies."""
    entry = {"pj": 1.0, "source": "test"}
    return {
        "name": "tiny", "clock_hz": 1e9,
        "array": {"rows": rows, "cols": cols, "dataflow": dataflow, "dtype": "int8", "acc_dtype": "int32"},
        "vector": {"lanes": vector_lanes},
        "memory": [
            {"name": "dram", "kind": "offchip", "capacity_bytes": 1 << 32, "bandwidth_bytes_per_cycle": bw,
             "latency_cycles": latency},
            {"name": "sram", "kind": "sram", "capacity_bytes": sram_bytes, "bandwidth_bytes_per_cycle": 64,
             "double_buffered": double},
        ],
        "energy": {"node": "test", "static_mw": static_mw, "actions": {
            a: dict(entry) for a in ("mac.int8", "vector.op", "dram.read_byte", "dram.write_byte",
                                     "sram.read_byte", "sram.write_byte", "array.reg_byte", "array.hop_byte")}},
    }


def tiny_arch(**kw):
    """ArchConfig of tiny_arch_dict."""
    return arch_from_dict(tiny_arch_dict(**kw))

