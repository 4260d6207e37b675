"""An arch's epilogue_ops: which elementwise ops its GEMM kernels apply as results drain (issue 29: a GPU serving
stack runs rotary and SiLU-and-mul as their own kernels)."""
from __future__ import annotations

import pytest

from tilesim.arch import load_arch
from tilesim.arch.errors import InputError
from tilesim.compiler.builder import GraphBuilder
from tilesim.compiler.fusion import group_ops
from tilesim.studies import api


def _gated_mlp():
    """x @ Wg -> Silu, x @ Wu, their product, @ Wd, plus the residual: a Llama MLP in six ops."""
    b = GraphBuilder("mlp")
    x = b.input("x", (16, 64))
    gate = b.add("Silu", [b.add("MatMul", [x, b.param("wg", (64, 128))], name="gate")], name="silu")
    up = b.add("MatMul", [x, b.param("wu", (64, 128))], name="up")
    h = b.add("Mul", [gate, up], name="gated")
    y = b.add("Add", [b.add("MatMul", [h, b.param("wd", (128, 64))], name="down"), x], name="residual")
    return b.build(y)


def test_default_arch_fuses_every_elementwise_op_into_the_epilogues():
    kernels = [k[1] for k in group_ops(_gated_mlp(), "full").kernels]
    assert kernels == [("gate", "silu"), ("up", "gated"), ("down", "residual")]


def test_a_gpu_epilogue_keeps_the_residual_add_and_runs_silu_and_the_gated_product_as_vector_kernels():
    # SiLU and the gated product become vector kernels of their own (the product reads the later `up`, so it cannot
    # join SiLU's kernel: one activation round trip more than vLLM's single silu_and_mul kernel)
    g = group_ops(_gated_mlp(), "full", ("Add", "Relu", "Gelu", "Cast"))
    assert [k[1] for k in g.kernels] == [("gate",), ("silu",), ("up",), ("gated",), ("down", "residual")]
    assert any("silu: not fused (the arch's GEMM epilogue applies only Add, Cast, Gelu, Relu" in n for n in g.notes)
    unfused = group_ops(_gated_mlp(), "epilogue", ("Add",))       # no vector chains under epilogue
    assert [k[1] for k in unfused.kernels] == [("gate",), ("silu",), ("up",), ("gated",), ("down", "residual")]


def test_an_unknown_epilogue_op_is_a_one_line_error():
    with pytest.raises(InputError, match="epilogue_ops: MatMul not elementwise op types; allowed: Abs, Add"):
        group_ops(_gated_mlp(), "full", ("Add", "MatMul"))


def test_h100_runs_rotary_and_silu_and_mul_as_their_own_kernels():
    # 7 GEMMs, 2 norms, attention, rotary on q and k, SiLU, the gated product: 14 kernels a layer (10 when all are
    # epilogues)
    h100 = api.run("llama2-7b", "h100", phase="decode", context=64)
    names = [k.name for k in h100.llm.decode[-1].end.kernels if k.name.startswith("layer0.")]
    assert {"layer0.attn.q_rope", "layer0.attn.k_rope", "layer0.mlp.silu", "layer0.mlp.gated"} <= set(names)
    assert len(names) == 14
    assert load_arch("h100").epilogue_ops == ("Add", "Relu", "Gelu", "Cast")
    assert load_arch("tpu-v4").epilogue_ops is None
