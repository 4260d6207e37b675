"""Energy defaults from the published anchors, node and dtype rules; the area model and its calibration."""
from __future__ import annotations

import pytest

from arch import InputError, arch_from_dict, load_arch
from arch.area_model import PE_OVERHEAD, area_mm2, pe_mm2, sram_mm2_per_mib
from arch.energy_model import mac_pj, node_scale, offchip_pj_per_byte, sram_pj_per_byte
from compiler.schedule import lower
from sim import simulate
from workloads import gemm

from archs import tiny_arch_dict


def test_anchors_are_reproduced_at_their_nodes():
    assert mac_pj("int8", 45)[0] == pytest.approx(0.23)          # Horowitz: 0.2 + 0.03
    assert mac_pj("int8", 7)[0] == pytest.approx(0.077)          # Jouppi: 0.07 + 0.007
    assert mac_pj("fp32", 45)[0] == pytest.approx(4.6) and mac_pj("fp32", 7)[0] == pytest.approx(1.69)
    assert mac_pj("fp16", 45)[0] == pytest.approx(1.5)
    assert offchip_pj_per_byte("HBM2")[0] == pytest.approx(31.2) and offchip_pj_per_byte("DDR4")[0] == 160


def test_node_scaling_is_monotone_and_interpolates():
    values = [mac_pj("bf16", n)[0] for n in (65, 45, 28, 16, 7, 5)]
    assert values == sorted(values, reverse=True)
    assert node_scale(1.0, 0.5, 45) == pytest.approx(1.0) and node_scale(1.0, 0.5, 7) == pytest.approx(0.5)


def test_dtype_rules_order_the_macs():
    at45 = {d: mac_pj(d, 45)[0] for d in ("int4", "int8", "int16", "int32", "fp8", "bf16", "fp16", "fp32")}
    assert at45["int4"] < at45["int8"] < at45["int16"] < at45["int32"]
    assert at45["fp8"] < at45["bf16"] < at45["fp16"] < at45["fp32"]


def test_sram_model_tracks_horowitz_points():
    for kib, pj64 in ((8, 10), (32, 20), (1024, 100)):          # 45 nm, pJ per 64-bit read
        assert sram_pj_per_byte(kib * 1024, 45)[0] == pytest.approx(pj64 / 8, rel=0.15)
    assert sram_pj_per_byte(8 * 1024, 7)[0] == pytest.approx(7.5 / 8) and \
        sram_pj_per_byte(2**20, 7)[0] == pytest.approx(14 / 8, rel=0.01)


def test_defaults_fill_what_an_arch_leaves_out_and_keep_what_it_gives():
    d = tiny_arch_dict()
    d["energy"] = {"node": "7 nm", "defaults": {"node_nm": 7, "offchip": "LPDDR4"},
                   "actions": {"mac.int8": {"pj": 9.0, "source": "mine"}}}
    arch = arch_from_dict(d)
    assert arch.energy.actions["mac.int8"].pj == 9.0
    assert arch.energy.actions["dram.read_byte"].pj == 104.0 and "LPDDR4" in arch.energy.actions["dram.read_byte"].source
    assert arch.energy.actions["sram.read_byte"].pj == pytest.approx(sram_pj_per_byte(1 << 20, 7)[0], rel=1e-4)
    r = simulate(lower(gemm(64, 64, 64), arch), arch)                  # every action it performs has an entry
    assert r.energy_breakdown_pj["mac"] == pytest.approx(9.0 * 64 ** 3)


def test_unknown_offchip_type_is_a_clear_error():
    d = tiny_arch_dict()
    d["energy"]["defaults"] = {"node_nm": 7, "offchip": "DDR9"}
    with pytest.raises(InputError, match="unknown memory type 'DDR9'"):
        arch_from_dict(d)


def test_pe_area_is_calibrated_on_tpu_v1():
    v1 = area_mm2(load_arch("tpu-v1"))
    assert v1["array"] == pytest.approx(0.24 * 331)                   # matrix unit: 24% of the die
    assert v1["unified_buffer"] == pytest.approx(0.29 * 331)          # unified buffer: 29%
    assert PE_OVERHEAD > 1
    assert pe_mm2("bf16", "fp32", 7) > pe_mm2("int8", "int32", 7)
    assert sram_mm2_per_mib(7) < sram_mm2_per_mib(28) < sram_mm2_per_mib(65)


def test_area_counts_private_levels_per_core_and_is_reported():
    d = tiny_arch_dict()
    d["area"] = {"node_nm": 7}
    one = area_mm2(arch_from_dict(d))
    d["cores"] = 4
    four = area_mm2(arch_from_dict(d))
    assert four["array"] == pytest.approx(4 * one["array"]) and four["sram"] == pytest.approx(4 * one["sram"])
    d["memory"][1]["shared"] = True
    assert area_mm2(arch_from_dict(d))["sram"] == pytest.approx(one["sram"])
    arch = arch_from_dict(d)
    r = simulate(lower(gemm(32, 32, 32), arch), arch)
    assert r.area_mm2 == pytest.approx(sum(area_mm2(arch).values()))


def test_area_overrides_and_validation():
    d = tiny_arch_dict()
    d["area"] = {"node_nm": 7, "pe_mm2": 0.001, "source": "my synthesis"}
    assert area_mm2(arch_from_dict(d))["array"] == pytest.approx(0.001 * 256)
    d["area"] = {"node_nm": 0}
    with pytest.raises(InputError, match="area.node_nm: must be > 0"):
        arch_from_dict(d)


def test_leakage_per_mm2_scales_with_the_area_model():
    d = tiny_arch_dict()
    d["area"] = {"node_nm": 7}
    d["energy"]["static_mw_per_mm2"] = 100.0
    arch = arch_from_dict(d)
    r = simulate(lower(gemm(64, 64, 64), arch), arch)
    expected = 100.0 * sum(area_mm2(arch).values()) * 1e9 * r.cycles / arch.clock_hz
    assert r.energy_breakdown_pj["static"] == pytest.approx(expected)
    d.pop("area")
    with pytest.raises(InputError, match="static_mw_per_mm2: needs an area section"):
        arch_from_dict(d)
