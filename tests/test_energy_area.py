"""Energy defaults from the published anchors, node and dtype rules; the area model and its calibration."""
from __future__ import annotations

from collections import Counter

import pytest
from archs import tiny_arch_dict

from tilesim import simulate
from tilesim.arch import InputError, arch_from_dict, load_arch
from tilesim.arch.area_model import PE_OVERHEAD, area_mm2, pe_mm2, sram_mm2_per_mib
from tilesim.arch.energy_model import mac_pj, node_scale, offchip_pj_per_byte, sram_pj_per_byte
from tilesim.arch.loader import load_yaml_text
from tilesim.cli.main import main
from tilesim.compiler.schedule import lower
from tilesim.core.commands import build_program
from tilesim.core.energy import action_counts, by_component, dynamic_energy_pj
from tilesim.report.format import sig
from tilesim.workloads import gemm, load_workload


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
    dram_read = arch.energy.actions["dram.read_byte"]
    assert dram_read.pj == 104.0 and "LPDDR4" in dram_read.source
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
    with pytest.raises(InputError, match=r"area.node_nm: must be > 0"):
        arch_from_dict(d)


def test_leakage_per_mm2_scales_with_the_area_model():
    d = tiny_arch_dict()
    d["area"] = {"node_nm": 7}
    d["energy"]["static_mw_per_mm2"] = 100.0
    arch = arch_from_dict(d)
    r = simulate(lower(gemm(64, 64, 64), arch), arch)
    area = area_mm2(arch)
    expected = 100.0 * sum(area.values()) * 1e9 * r.cycles / arch.clock_hz
    static = {k: v for k, v in r.energy_breakdown_pj.items() if k.startswith("static")}
    assert sum(static.values()) == pytest.approx(expected)        # the total is what it was before the split
    for comp, mm2 in area.items():                                # ... now attributed to each component by its area
        assert static[f"static.{comp}"] == pytest.approx(100.0 * mm2 * 1e9 * r.cycles / arch.clock_hz)
    d.pop("area")
    with pytest.raises(InputError, match="static_mw_per_mm2: needs an area section"):
        arch_from_dict(d)


# ---------------------------------------------------------------- static power per component

def _run(arch, workload=None):
    return simulate(lower(workload or gemm(64, 64, 64), arch), arch)


def _static_arch(cores=1, shared=False, **static_mw):
    d = tiny_arch_dict()
    d["cores"] = cores
    d["memory"][1]["shared"] = shared
    d["energy"]["static_components"] = {c: {"mw": mw, "source": "test"} for c, mw in static_mw.items()}
    return arch_from_dict(d)


def test_static_power_per_component_is_power_times_time_per_instance():
    arch = _static_arch(cores=2, array=10.0, vector=1.0, sram=5.0, dram=2.0)
    r = _run(arch)
    # array and vector once per core, a private SRAM once per core, the off-chip level once
    assert r.static_power_mw == {"static.array": 20.0, "static.vector": 2.0, "static.dram": 2.0, "static.sram": 10.0}
    seconds = r.cycles / arch.clock_hz
    for key, mw in r.static_power_mw.items():
        assert r.energy_breakdown_pj[key] == pytest.approx(mw * 1e9 * seconds)     # 1 mW for 1 s = 1e9 pJ
    assert r.energy_pj == pytest.approx(sum(r.energy_breakdown_pj.values()))
    assert sum(k.energy_pj for k in r.kernels) == pytest.approx(r.energy_pj)
    assert r.to_dict()["static_power_mw"] == r.static_power_mw
    shared = _run(_static_arch(cores=2, shared=True, sram=5.0))
    assert shared.static_power_mw == {"static.sram": 5.0}                          # a shared level: one copy


def test_zero_static_power_leaves_only_dynamic_energy():
    dynamic = _run(_static_arch())
    zero = _run(_static_arch(array=0.0, sram=0.0, dram=0.0, vector=0.0))
    assert zero.energy_breakdown_pj == dynamic.energy_breakdown_pj and zero.static_power_mw == {}
    leaky = _run(_static_arch(array=3.0, sram=4.0))
    static = sum(v for k, v in leaky.energy_breakdown_pj.items() if k.startswith("static"))
    assert leaky.energy_pj - static == pytest.approx(dynamic.energy_pj)
    assert static == pytest.approx(7.0 * 1e9 * leaky.cycles / 1e9)


def test_static_components_are_validated_and_shown(capsys):
    d = tiny_arch_dict()
    d["energy"]["static_components"] = {"sramm": {"mw": 1.0, "source": "test"}}
    with pytest.raises(InputError, match=r"energy.static_components.sramm: no such component \(did you mean 'sram'"):
        arch_from_dict(d)
    d["energy"]["static_components"] = {"sram": {"mw": -1.0, "source": "test"}}
    with pytest.raises(InputError, match=r"energy.static_components.sram.mw: must be >= 0"):
        arch_from_dict(d)
    d["energy"]["static_components"] = {"sram": {"mw": 1.0}}
    with pytest.raises(InputError, match=r"energy.static_components.sram.source: required field is missing"):
        arch_from_dict(d)
    assert main(["show-arch", "eyeriss", "--set", "energy.static_components.glb={mw: 2.5, source: my leakage}"]) == 0
    out = capsys.readouterr().out
    assert "static_components:\n    glb:\n      mw: 2.5\n      source: my leakage" in out


def test_show_arch_resolves_static_power_per_component(capsys):
    assert main(["show-arch", "tpu-v4", "--set", "energy.static_mw_per_mm2=100"]) == 0
    out = capsys.readouterr().out
    area = area_mm2(load_arch("tpu-v4"))
    assert (f"# static power by component, resolved (mW): static.array {sig(100 * area['array'])}, "
            f"static.vector {sig(100 * area['vector'])}, static.vmem {sig(100 * area['vmem'])}\n") in out
    assert load_yaml_text(out, "show-arch")["energy"]["static_mw_per_mm2"] == 100      # still loadable YAML


def test_set_reaches_dotted_action_names_and_marks_the_source():
    arch = load_arch("eyeriss", ["energy.actions.mac.int16.pj=2"])
    entry = arch.energy.actions["mac.int16"]
    assert entry.pj == 2.0 and entry.source.startswith("--set (was 1.0 pJ: Chen et al.")
    v4 = load_arch("tpu-v4", ["energy.actions.array.reg_byte.pj=0.5"])      # a default-filled entry: pj only
    reg = v4.energy.actions["array.reg_byte"]
    assert reg.pj == 0.5 and "set by the arch" in reg.source
    with pytest.raises(InputError, match=r"no field 'mac.int9'"):
        load_arch("eyeriss", ["energy.actions.mac.int9.pj=2"])


# ---------------------------------------------------------------- idle PEs (energy.charge_idle_pes)

def _idle_arch(charge: bool, rows=16, cols=16, cores=1, idle_pj=1.0):
    d = tiny_arch_dict(rows=rows, cols=cols)
    d["cores"] = cores
    d["energy"]["actions"]["array.idle_pe_cycle"] = {"pj": idle_pj, "source": "test"}
    d["energy"]["charge_idle_pes"] = charge
    return arch_from_dict(d)


@pytest.mark.parametrize("cores", [1, 2])
def test_idle_pe_cycles_are_busy_pe_cycles_without_a_mac(cores):
    work = gemm(40, 24, 20)            # 40 x 24 outputs, K = 20: every fold leaves PEs idle on a 16 x 16 array
    gated, clocked = _run(_idle_arch(False, cores=cores), work), _run(_idle_arch(True, cores=cores), work)
    assert "array.idle_pe_cycle" not in str(gated.energy_breakdown_pj)
    (k,) = [k for k in clocked.kernels if k.engine == "array"]
    idle = k.compute_cycles * 16 * 16 * cores - k.macs                   # every entry is 1 pJ
    assert idle > 0
    assert clocked.energy_breakdown_pj["array"] - gated.energy_breakdown_pj["array"] == pytest.approx(idle)
    assert clocked.energy_pj - gated.energy_pj == pytest.approx(idle)
    # the same count from the report: busy fraction x cycles x PEs - MACs, within a cycle of PEs (a kernel stretched
    # to its level's need has compute times on the 1/1024-cycle grid; compute_cycles counts whole cycles)
    assert abs(clocked.engine_busy["array"] * clocked.cycles * 256 * cores - clocked.macs - idle) < 256 * cores


def test_idle_pes_off_by_default_and_need_an_entry():
    for name in ("tpu-v1", "tpu-v4", "gemmini", "edge-npu", "eyeriss"):
        assert not load_arch(name).energy.charge_idle_pes
    d = tiny_arch_dict()
    d["energy"]["charge_idle_pes"] = True
    with pytest.raises(InputError,
                       match=r"energy.charge_idle_pes: needs an energy.actions entry for array.idle_pe_cycle"):
        arch_from_dict(d)
    with pytest.raises(InputError, match=r"array.idle_pe_cycle"):
        load_arch("eyeriss", ["energy.charge_idle_pes=true"])             # its relative table has no such entry


def test_idle_pe_default_is_one_mac_at_the_array_dtype():
    v4 = load_arch("tpu-v4", ["energy.charge_idle_pes=true"])
    entry = v4.energy.actions["array.idle_pe_cycle"]
    assert entry.pj == v4.energy.actions["mac.bf16"].pj == 0.53 and "SCALE-Sim v3" in entry.source   # the arch's MAC
    d = tiny_arch_dict()
    del d["energy"]["actions"]["mac.int8"]
    d["energy"]["defaults"] = {"node_nm": 7}
    assert arch_from_dict(d).energy.actions["array.idle_pe_cycle"].pj == pytest.approx(mac_pj("int8", 7)[0], rel=1e-4)


def test_doubling_every_entry_doubles_dynamic_energy_with_idle_pes():
    one, two = _idle_arch(True), _idle_arch(True, idle_pj=2.0)
    d = tiny_arch_dict()
    for e in d["energy"]["actions"].values():
        e["pj"] = 2.0
    d["energy"]["actions"]["array.idle_pe_cycle"] = {"pj": 2.0, "source": "test"}
    d["energy"]["charge_idle_pes"] = True
    work = gemm(40, 24, 20)
    assert _run(arch_from_dict(d), work).energy_pj == pytest.approx(2 * _run(one, work).energy_pj)
    assert _run(two, work).energy_pj > _run(one, work).energy_pj


# ---------------------------------------------------------------- the Eyeriss-style check (docs/energy-eyeriss.md)

def _conv_layer_pj(workload: str, batch: int) -> tuple[Counter, int]:
    """pJ by component of a CNN's conv layers on the eyeriss preset (relative table: 1 unit = 1 pJ), and their MACs."""
    arch = load_arch("eyeriss")
    graph = load_workload(workload, batch=batch, dtype=arch.array.dtype)
    schedule = lower(graph, arch)
    convs = {op.name for op in graph.ops if op.op_type == "Conv"}
    pj, macs = Counter(), 0
    for kernel, cmds in zip(schedule.kernels, build_program(schedule, arch).per_kernel, strict=False):
        if convs & set(kernel.ops):
            pj.update(by_component(dynamic_energy_pj(action_counts(kernel, cmds, arch), arch, kernel.name)))
            macs += kernel.work.macs
    return pj, macs


@pytest.mark.parametrize("workload, batch, measured", [("alexnet", 4, 0.0029), ("vgg16", 3, 0.0035)])
def test_eyeriss_conv_layers_dram_share_and_traffic_match_the_papers(workload, batch, measured):
    pj, macs = _conv_layer_pj(workload, batch)
    total = sum(pj.values())
    dram, buffer = pj["dram"] / total, pj["glb"] / total
    # Eyeriss (JSSC 2017) measured 0.0029 (AlexNet, batch 4) and 0.0035 (VGG-16, batch 3) DRAM accesses (16-bit
    # words) per MAC with run-length-compressed activations (about 2x less image traffic, ISSCC 2016); tilesim does
    # not compress, so it should land between 1x and 2x of them. 200 units per 16-bit word = 100 pJ per byte here.
    words_per_mac = pj["dram"] / 100 / 2 / macs
    assert measured <= words_per_mac <= 2 * measured
    # DRAM share bounds from the same numbers (docs/energy-eyeriss.md): DRAM units/MAC d = 200 x accesses/MAC (x2
    # uncompressed at most) over d + on-chip units/MAC, the on-chip part at least ALU 1 + 4 RF accesses (ISCA 2016's
    # row-stationary model) and at most 10 (assumed)
    d = 200 * measured
    assert d / (d + 10) <= dram <= 2 * d / (2 * d + 5)
    # direction: most conv-layer energy is data moved inside the array, not to DRAM and the global buffer
    assert dram + buffer < 0.5 and pj["array"] + pj["spad"] > dram + buffer
