"""Weight sparsity (issue 30): stored bytes and metadata, zero skipping on the array, SCALE-Sim 3.0.0's sparse mode,
options and arch fields; each number below is worked out by hand in its comment."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tilesim.arch.errors import InputError
from tilesim.arch.loader import load_arch, load_yaml_text
from tilesim.arch.scalesim_cfg import raw_from_cfg
from tilesim.compiler.ir import Graph, Op, Tensor
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.compiler.sparsity import (
    WeightSparsity,
    kept_along_k,
    nm_sparsity,
    parse_weight_sparsity,
    stored_weight_bytes,
)
from tilesim.core.simulate import simulate
from tilesim.studies.api import load_arch as api_arch
from tilesim.studies.api import run, sweep
from tilesim.studies.flash_sparsity import (
    Compute,
    FlashLink,
    NeuronStreaming,
    Predictor,
    compute_from_arch,
    link_from_arch,
    stream,
)
from tilesim.studies.options import OptionError, WorkloadOptions
from tilesim.workloads import decoder_config, load_workload
from tilesim.workloads.llm import DecoderConfig
from tilesim.workloads.sparsity import (
    apply_weight_sparsity,
    conv_weight_sparsity,
    initializer_sparsity,
    pruned_savings_bytes,
)

DATA = Path(__file__).parent / "data"


def gemm(sp: WeightSparsity | None, m: int = 4, n: int = 8, k: int = 16) -> Graph:
    """C[m, n] = A[m, k] @ W[k, n] with W pruned as `sp`."""
    t = {"a": Tensor("a", (m, k)), "w": Tensor("w", (k, n), is_param=True, sparsity=sp), "c": Tensor("c", (m, n))}
    return Graph("t", t, [Op("mm", "MatMul", ("a", "w"), ("c",))], ("a",), ("c",))


def sim(sp: WeightSparsity | None, patterns: tuple[str, ...] = ()):
    """The one kernel of gemm(sp) on gemmini (16x16 OS, int8, DRAM 162.5 pJ/B) with SCALE-Sim fold timing."""
    arch = load_arch("gemmini")
    arch = replace(arch, array=replace(arch.array, sparsity=patterns))
    result = simulate(lower(gemm(sp), arch, CompileOptions(timing="scalesim")), arch)
    return result, result.kernels[0]


# ---------------------------------------------------------------- stored bytes

def test_nm_kept_counts_partial_groups():
    """2:4: k=16 keeps 8; k=5 keeps 2 + min(1, 2) = 3; k=7 keeps 2 + min(3, 2) = 4. 1:4: k=13 keeps 3 + 1 = 4."""
    assert kept_along_k([16, 5, 7], nm_sparsity(2, 4)).tolist() == [8, 3, 4]
    assert int(kept_along_k(13, nm_sparsity(1, 4))) == 4


@pytest.mark.parametrize("sp, dtype, k, n, expected", [
    (nm_sparsity(2, 4), "int8", 16, 8, 64 + 16),     # 64 kept values + 64 * 2 bits
    (nm_sparsity(2, 4), "fp16", 16, 8, 128 + 16),    # same metadata, 2-byte values
    (nm_sparsity(1, 4), "int8", 13, 5, 20 + 5),      # 4 kept per column * 5 = 20 values, 40 bits = 5 bytes
    (nm_sparsity(4, 8), "int8", 16, 2, 16 + 6),      # 16 values * 3 bits = 48 bits = 6 bytes
    (WeightSparsity(0.25), "int8", 16, 8, 32 + 16),                   # 32 non-zeros + 128-bit mask
    (WeightSparsity(0.25, format="csr"), "int8", 16, 8, 32 + 32 + 17 * 4),   # 1-byte column ids, 17 row ptrs
    (WeightSparsity(0.25, format="csc"), "int8", 16, 8, 32 + 32 + 9 * 4),    # 1-byte row ids, 9 column ptrs
    (WeightSparsity(0.5, format="csr"), "int8", 4, 300, 600 + 600 * 2 + 5 * 4),   # 300 columns: 2-byte ids
    (None, "int8", 16, 8, 128),
])
def test_stored_weight_bytes(sp, dtype, k, n, expected):
    assert int(stored_weight_bytes(k, n, dtype, sp)) == expected


def test_dense_ratio_is_dense():
    """1:1 and a zero share of 0 are dense: no metadata."""
    assert nm_sparsity(4, 4) is None
    assert parse_weight_sparsity("1:1") is None and parse_weight_sparsity("0") is None
    assert parse_weight_sparsity("0.7", "csc") == WeightSparsity(density=pytest.approx(0.3), format="csc")


# ---------------------------------------------------------------- on the array

def test_skipping_exact_cycles_macs_and_bytes():
    """gemmini 16x16 OS, M=4 N=8 K=16, SCALE-Sim timing: cycles = T + R + C - 2 - 1 with T the K the array runs.
    Dense T=16: 45. 2:4 skipped: T=8: 37. Unstructured density 0.25 skipped: T=4: 33. Not skipped: 45."""
    _, dense = sim(None)
    assert (dense.compute_cycles, dense.macs, dense.dram_weight_read_bytes) == (45, 512, 128)
    _, kept = sim(nm_sparsity(2, 4))                       # stored compressed, array cannot skip
    assert (kept.compute_cycles, kept.macs, kept.dram_weight_read_bytes) == (45, 512, 80)
    for patterns in (("2:4",), ("structured",), ("unstructured",)):
        _, skip = sim(nm_sparsity(2, 4), patterns)
        assert (skip.compute_cycles, skip.macs, skip.dram_weight_read_bytes) == (37, 256, 80)
    _, other = sim(nm_sparsity(2, 4), ("1:4",))            # a pattern the array does not accelerate
    assert other.compute_cycles == 45
    _, un = sim(WeightSparsity(0.25, format="csr"), ("unstructured",))
    assert (un.compute_cycles, un.macs, un.dram_weight_read_bytes) == (33, 128, 132)
    _, no = sim(WeightSparsity(0.25), ("2:4",))            # unstructured weights on an N:M-only array
    assert no.compute_cycles == 45


def test_energy_counts_metadata():
    """DRAM energy = 162.5 pJ/B x (A 64 + W stored 80 (64 values + 16 metadata) + C 32) bytes."""
    result, _ = sim(nm_sparsity(2, 4))
    assert result.energy_breakdown_pj["dram"] == pytest.approx(162.5 * (64 + 80 + 32))
    dense, _ = sim(None)
    assert dense.energy_breakdown_pj["dram"] == pytest.approx(162.5 * (64 + 128 + 32))


def test_utilization_stays_physical():
    """Skipped MACs are not counted as done: utilization <= 1 when cycles shrink."""
    result, k = sim(nm_sparsity(1, 4), ("structured",))
    assert 0 < k.compute_utilization <= 1 and 0 < result.pe_utilization <= 1
    assert k.macs == 4 * 8 * 4


# ---------------------------------------------------------------- SCALE-Sim 3.0.0 sparse mode

REF = json.loads((DATA / "scalesim_sparse_ref.json").read_text())


@pytest.mark.parametrize("case", REF["cases"], ids=[c["case"] for c in REF["cases"]])
def test_scalesim_sparse_cycles_exact(case, tmp_path):
    """Compute cycles equal SCALE-Sim 3.0.0's on every sparse layer (tests/data/scalesim_sparse_ref.json, made by
    the commands it lists); mapping efficiency too, except OptimizedMapping (rowwise), whose skewed demand
    matrices SCALE-Sim averages differently."""
    cfg, topo = tmp_path / f"{case['case']}.cfg", tmp_path / "topology.csv"
    cfg.write_text(case["cfg"])
    topo.write_text(case["topology"])
    arch = load_arch(str(cfg))
    kernels = simulate(lower(load_workload(str(topo)), arch, CompileOptions(timing="scalesim")), arch).kernels
    assert [k.compute_cycles for k in kernels] == [layer["cycles"] for layer in case["layers"]]
    if "rowwise" not in case["case"]:
        assert [k.mapping_efficiency for k in kernels] == pytest.approx([la["mapping_eff"] for la in case["layers"]],
                                                                        abs=1e-12)


def test_scalesim_cfg_sparsity_section():
    """SparsitySupport true -> array.sparsity [structured]; with OptimizedMapping -> rowwise:<BlockSize>."""
    base = (DATA / "scalesim_sparse_ref.json")
    text = json.loads(base.read_text())["cases"][0]["cfg"]
    assert raw_from_cfg(text, "x.cfg")["array"]["sparsity"] == ["structured"]
    opt = text.replace("OptimizedMapping : false", "OptimizedMapping : true").replace("BlockSize : 8", "BlockSize : 4")
    assert raw_from_cfg(opt, "x.cfg")["array"]["sparsity"] == ["rowwise:4"]
    with pytest.raises(InputError, match=r"sparsity\.BlockSize: got 16, allowed: an even number <= ArrayHeight"):
        raw_from_cfg(opt.replace("BlockSize : 4", "BlockSize : 16"), "x.cfg")
    with pytest.raises(InputError, match=r"sparsity\.OptimizedMapping: SCALE-Sim 3\.0\.0 runs it with Dataflow ws"):
        raw_from_cfg(opt.replace("Dataflow : ws", "Dataflow : os"), "x.cfg")
    off = text.replace("SparsitySupport : true", "SparsitySupport : false")
    assert raw_from_cfg(off, "x.cfg")["array"]["sparsity"] == []


# ---------------------------------------------------------------- inputs

def test_arch_field_and_yaml_reads_nm_as_text():
    """YAML 1.1 would read 2:4 as the base-60 integer 124; the arch loader keeps it as '2:4'."""
    assert load_yaml_text("s: [2:4, 1:4]", "x") == {"s": ["2:4", "1:4"]}
    assert api_arch("gemmini", ["array.sparsity=[2:4, unstructured, rowwise:8]"]).array.sparsity == (
        "2:4", "unstructured", "rowwise:8")


@pytest.mark.parametrize("value, message", [
    ("[3:2]", "array.sparsity[0]: got '3:2': N:M needs 1 <= N < M <= 256"),
    ("[dense]", "array.sparsity[0]: got 'dense', allowed: N:M"),
    ("[rowwise:3]", "array.sparsity[0]: got 'rowwise:3': rowwise:B needs an even B"),
    ("[rowwise:32]", "array.sparsity[0]: rowwise:32: B must be <= array.rows (16)"),
])
def test_bad_array_sparsity(value, message):
    with pytest.raises(InputError) as e:
        api_arch("gemmini", [f"array.sparsity={value}"])
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw, message", [
    ({"weight_sparsity": "5:4"}, "weight_sparsity: got '5:4': N:M needs 1 <= N <= M <= 256"),
    ({"weight_sparsity": "1.5"}, "weight_sparsity: got '1.5', allowed: N:M (e.g. 2:4) or a share of zero weights"),
    ({"weight_format": "coo"}, "weight_format: got 'coo', allowed: bitmask, csr, csc"),
])
def test_bad_weight_sparsity_options(kw, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        WorkloadOptions("gemm:8,8,8", **kw)


def test_weight_sparsity_option_prunes_only_weight_operands():
    """--weight-sparsity applies to contraction weights, not to activations (attention's K and V)."""
    g = apply_weight_sparsity(gemm(None), nm_sparsity(2, 4))
    assert g.tensors["w"].sparsity == nm_sparsity(2, 4) and g.tensors["a"].sparsity is None
    r = run("gemm:4,8,16", "gemmini", weight_sparsity="2:4", overrides=["array.sparsity=[2:4]"], timing="scalesim")
    assert r.sim.kernels[0].compute_cycles == 37 and r.sim.kernels[0].dram_weight_read_bytes == 80


def test_llm_weight_bytes_are_stored_bytes():
    """A 2:4 16x8 int8 weight saves 128 - 80 = 48 B; an LLM's reported weight_bytes drop by its savings."""
    assert pruned_savings_bytes(gemm(nm_sparsity(2, 4))) == 48
    dense = run("gpt2", "edge-npu", phase="decode", context=8).llm
    pruned = run("gpt2", "edge-npu", phase="decode", context=8, weight_sparsity="2:4").llm
    assert dense.weight_bytes - pruned.weight_bytes > 0.3 * dense.weight_bytes
    assert pruned.tpot_s < dense.tpot_s                  # decode is memory-bound: fewer weight bytes


def test_predictor_cost_is_simulated():
    """--predictor-rank 16 on GPT-2 (12 layers, d 768, ffn 3072, plain MLP): + 12 * (768*16 + 16*3072) = 737,280
    MACs per decode step, and its weights (12 * 61,440 int8 bytes) join weight_bytes; energy grows."""
    base = run("gpt2", "edge-npu", phase="decode", context=8, mlp_sparsity=0.5).llm
    pred = run("gpt2", "edge-npu", phase="decode", context=8, mlp_sparsity=0.5, predictor_rank=16).llm
    assert pred.decode[0].start.macs - base.decode[0].start.macs == 737_280
    assert pred.weight_bytes - base.weight_bytes == 737_280
    assert pred.decode[0].start.energy_pj > base.decode[0].start.energy_pj


def test_initializer_zeros_counted():
    """A (K=8, N=2) MatMul weight with 2 non-zeros in each 4 along K is 2:4; 1 in 4 is 1:4; scattered zeros give
    the counted density; a conv weight groups along its input channels."""
    w = np.array([[1, 0], [0, 2], [3, 4], [0, 0], [0, 1], [5, 0], [0, 2], [6, 0]])
    assert initializer_sparsity(w, 0) == nm_sparsity(2, 4)
    one = np.zeros((8, 3))
    one[::4] = 1
    assert initializer_sparsity(one, 0) == nm_sparsity(1, 4)
    ragged = np.array([[1, 1, 1, 0, 0, 0]])           # 3 of the first 4: no N:M pattern; density 3/6
    assert initializer_sparsity(ragged, 1) == WeightSparsity(0.5)
    assert initializer_sparsity(np.ones((4, 4)), 0) is None
    conv = np.zeros((2, 4, 1, 1))                      # C_out 2, C_in 4: channels 0 and 3 kept -> 2:4
    conv[:, [0, 3]] = 1
    assert conv_weight_sparsity(conv) == nm_sparsity(2, 4)


def test_onnx_initializer_zeros_reach_the_graph(tmp_path):
    """An ONNX MatMul whose initializer is 2:4-pruned imports with 2:4 weights (compressed bytes)."""
    onnx = pytest.importorskip("onnx")
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto

    w = np.zeros((8, 4), dtype=np.float32)
    w[0::4] = 1.0
    w[1::4] = 2.0                                      # 2 of every 4 along K kept
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                              [numpy_helper.from_array(w, "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    g = load_workload(str(path))
    assert [t.sparsity for t in g.tensors.values() if t.is_param] == [nm_sparsity(2, 4)]


def test_sweep_grids_patterns(tmp_path):
    """array.sparsity is an arch field, so --grid takes patterns: [] (none) vs [2:4] on 2:4 weights."""
    rows = sweep(["array.sparsity=[],[2:4]"], "gemm:4,8,16", "gemmini", output=tmp_path / "s.csv",
                 weight_sparsity="2:4", timing="scalesim")
    assert (rows[0]["array.sparsity"], rows[0]["status"]) == ("[]", "ok")
    assert int(rows[1]["cycles"]) == int(rows[0]["cycles"]) - 8      # 45 -> 37 compute cycles (T 16 -> 8)


def test_sweep_grids_densities(tmp_path):
    """weight_sparsity is a grid axis too: dense, 2:4 and 75% zeros on an array that skips any zero."""
    rows = sweep(["weight_sparsity=0,2:4,0.75"], "gemm:4,8,16", "gemmini", output=tmp_path / "s.csv",
                 overrides=["array.sparsity=[unstructured]"], timing="scalesim")
    assert [r["status"] for r in rows] == ["ok"] * 3
    cycles = [int(r["cycles"]) for r in rows]
    assert cycles[0] > cycles[1] > cycles[2]             # T = 16, 8, 4 and fewer weight bytes
    assert [r["weight_sparsity"] for r in rows] == ["0", "2:4", "0.75"]
    with pytest.raises(OptionError, match="weight_sparsity=9:4: got '9:4'"):       # names the grid axis
        sweep(["weight_sparsity=9:4"], "gemm:4,8,16", "gemmini", output=tmp_path / "t.csv")


# ---------------------------------------------------------------- seed 003: predicted neurons streamed from flash

TINY = DecoderConfig(hidden=4, layers=2, heads=1, kv_heads=1, head_dim=4, ffn=8, vocab=16, name="tiny")
LINK = FlashLink(bandwidth_bytes_per_s=64, burst_bytes=16, read_latency_s=1.0, queue_depth=2, read_pj_per_byte=10)
GPU = Compute(peak_macs_per_s=24, dram_bytes_per_s=48, resident_s_per_layer=0.5)


def test_flash_streaming_by_hand():
    """d=4, f=8, gated (3 matrices), bf16: a neuron is 3 x 8 B; bundled one read of 24 -> 32 B (16 B bursts).
    p = 0.5: 4 neurons, 128 B per layer; flash max(128/64, 4 reads * 1 s / 2) = 2 s; predictor 4*2 + 2*8 = 24
    MACs: max(24/24, 48 B/48) = 1 s; MLP 96 B / 48 = 2 s; layer 0.5 + 1 + 2 + 2 = 5.5 s, TPOT 11 s.
    Dense: 192 B per layer, 3 s; MLP 192 B / 48 = 4 s; 7.5 s per layer, 15 s."""
    r = stream(TINY, NeuronStreaming((0.5,), Predictor(2)), LINK, GPU)
    assert (r.flash_bytes_per_token, r.tpot_s, r.predictor_macs_per_token) == (256, 11.0, 48)
    assert (r.dense_flash_bytes_per_token, r.dense_tpot_s) == (384, 15.0)
    assert r.pj_per_token == pytest.approx(2560)                   # flash only: 256 B x 10 pJ (no MAC/DRAM pJ)


def test_flash_streaming_bundling_window_and_predictor_quality():
    """Unbundled: 3 reads of 16 B per neuron: 192 B, max(3 s, 12 reads / 2) = 6 s. Window k=2 at p=0.5: hit
    1 - 0.25 = 0.75, 1 neuron read (32 B), 8 * 0.75 neurons held (144 B a layer); a 96 B budget (a quarter of
    the 384 B of MLP weights) caps hits at 0.25: 3 neurons read. recall 0.9 / precision 0.6 at 40% active: p=0.6."""
    un = stream(TINY, NeuronStreaming((0.5,), Predictor(2), bundling=False), LINK, GPU)
    assert un.layers[0].flash_bytes == 192 and un.layers[0].flash_s == 6.0
    win = stream(TINY, NeuronStreaming((0.5,), Predictor(2), window_tokens=2), LINK, GPU)
    assert (win.layers[0].hit_share, win.layers[0].flash_bytes, win.cache_bytes) == (0.75, 32, 288)
    capped = stream(TINY, NeuronStreaming((0.5,), Predictor(2), window_tokens=2, cache_limit_bytes=96), LINK, GPU)
    assert capped.layers[0].flash_bytes == 96
    q = stream(TINY, NeuronStreaming((0.4, 0.2), Predictor(2, recall=0.9, precision=0.6)), LINK, GPU)
    assert [x.predicted_share for x in q.layers] == pytest.approx([0.6, 0.3])


@pytest.mark.parametrize("scheme, message", [
    (NeuronStreaming((0.5, 0.5, 0.5)), "active_share: give one share or one per layer (2), got 3"),
    (NeuronStreaming((0.0,)), "active_share: each share must be > 0 and <= 1"),
    (NeuronStreaming((0.5,), Predictor(0)), "predictor: rank must be >= 1"),
    (NeuronStreaming((0.5,), window_tokens=-1), "window_tokens: must be >= 0"),
])
def test_flash_streaming_bad_input(scheme, message):
    with pytest.raises(InputError, match=re.escape(message)):
        stream(TINY, scheme, LINK, GPU)


def test_activation_products_run_dense():
    """rowwise:4 compresses every weight matrix's K (K=16 -> ceil(16/8)*4 = 8: OS T 16 -> 8, 45 -> 37 cycles) but
    not a product of two activations."""
    arch = api_arch("gemmini", ["array.sparsity=[rowwise:4]"])
    _, k = sim(None, ("rowwise:4",))
    assert k.compute_cycles == 37
    t = {"a": Tensor("a", (4, 16)), "b": Tensor("b", (16, 8)), "c": Tensor("c", (4, 8))}
    g = Graph("t", t, [Op("mm", "MatMul", ("a", "b"), ("c",))], ("a", "b"), ("c",))
    assert simulate(lower(g, arch, CompileOptions(timing="scalesim")), arch).kernels[0].compute_cycles == 45


def test_flash_link_from_the_arch():
    """phone-npu's UFS 4.0 level: 4.2 GB/s, 4 KiB blocks, 80,000 cycles at 1 GHz = 80 us a read; its array
    128 x 128 at 1 GHz = 16,384e9 MACs/s. Gemma-2B int8 bundled at 25% active reads f * 0.25 neurons of
    3 * 2048 B (1.5 blocks -> 2 blocks, 8 KiB) a layer: 18 * 4096 * 8192 B a token."""
    arch = load_arch("phone-npu")
    link, gpu = link_from_arch(arch, queue_depth=32), compute_from_arch(arch)
    assert (link.bandwidth_bytes_per_s, link.burst_bytes, link.read_latency_s) == (4.2e9, 4096, 80e-6)
    assert gpu.peak_macs_per_s == 16_384e9
    r = stream(decoder_config("gemma-2b"), NeuronStreaming((0.25,)), link, gpu, "int8")
    assert r.flash_bytes_per_token == 18 * 4096 * 8192
    assert r.tpot_s < r.dense_tpot_s
