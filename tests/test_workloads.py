"""Built-in workloads: shapes, parameter counts and MACs against published numbers and hand formulas."""
from __future__ import annotations

import re
from math import prod

import pytest

from tilesim.arch.errors import InputError
from tilesim.compiler import Graph
from tilesim.workloads import BUILT_KEPT, describe_workloads, load_workload, workload_names

CNN_OUTPUT = (1, 1000)


def macs(g: Graph) -> int:
    """MACs by hand, independent of the compiler's lowering: Conv N*K*E*F*(C/g)*R*S, MatMul batch*M*N*K, Gemm M*N*K."""
    t = {name: tensor.shape for name, tensor in g.tensors.items()}
    total = 0
    for op in g.ops:
        out = t[op.outputs[0]]
        if op.op_type == "Conv":          # out (N, K, E, F), weight (K, C/g, R, S)
            total += prod(out) * prod(t[op.inputs[1]][1:])
        elif op.op_type == "MatMul":      # out (batch..., M, N); K is A's last dim
            total += prod(out) * t[op.inputs[0]][-1]
        elif op.op_type == "Gemm":        # out (M, N); K from A, honouring transA
            a = t[op.inputs[0]]
            total += prod(out) * (a[0] if op.attrs.get("transA", 0) else a[1])
    return total


def params(g: Graph) -> int:
    """Learned parameters as torchvision / HF count them.

    BatchNormalization's running mean and var are buffers, not parameters, so only its scale and bias count;
    shape-(1,) constants (BERT's 1/sqrt(d_k)) are not learned and are left out too.
    """
    buffers = {x for op in g.ops if op.op_type == "BatchNormalization" for x in op.inputs[3:5]}
    return sum(t.elements for t in g.tensors.values() if t.is_param and t.name not in buffers and t.shape != (1,))


@pytest.fixture(scope="module", params=["resnet18", "resnet50", "mobilenet_v2", "alexnet", "vgg16", "bert-base"])
def built(request):
    return request.param, load_workload(request.param)


# ---------------------------------------------------------------- (a) every built-in builds, right output shapes

def test_names_and_descriptions():
    assert workload_names() == ["alexnet", "attention", "bert-base", "deepseek-v3", "falcon-7b", "gemma-2b",
                                "gemma2-9b", "gpt2", "llama2-7b", "llama3-8b", "llama3.1-70b", "mistral-7b",
                                "mixtral-8x7b",
                                "mobilenet_v2", "phi3-mini", "qwen2.5-7b", "qwen3-30b-a3b", "resnet18", "resnet50",
                                "vgg16", "vit-b16"]
    desc = describe_workloads()
    assert set(workload_names()) <= set(desc) and "gemm:M,N,K" in desc
    assert all(isinstance(v, str) and v and "\n" not in v for v in desc.values())


def test_output_shape(built):
    name, g = built
    assert len(g.outputs) == 1
    expected = (1, 128, 768) if name == "bert-base" else CNN_OUTPUT
    assert g.tensors[g.outputs[0]].shape == expected


def test_op_names_are_readable_and_unique(built):
    _, g = built
    # The builder silently renames a repeated name to name_1: every name here must be the one we chose.
    assert not [op.name for op in g.ops if re.search(r"_\d+$", op.name)]
    assert len({op.name for op in g.ops}) == len(g.ops)


def test_default_dtype_and_override():
    g = load_workload("resnet18")
    assert g.tensors["conv1.w"].dtype == "int8"
    g = load_workload("bert-base", dtype="bf16", seq_len=16)
    assert g.tensors["embeddings.word.w"].dtype == "bf16"
    assert g.tensors["input_ids"].dtype == "int32"
    assert g.tensors[g.outputs[0]].dtype == "bf16"


def test_batch_and_seq_len():
    g = load_workload("resnet50", batch=4)
    assert g.tensors[g.outputs[0]].shape == (4, 1000)
    g = load_workload("bert-base", batch=2, seq_len=64)
    assert g.tensors[g.outputs[0]].shape == (2, 64, 768)


def test_name_spelling_is_forgiving():
    assert load_workload("BERT_base").name == "bert-base"
    assert load_workload("mobilenet-v2").name == "mobilenet_v2"


def test_resnet_layout():
    g = load_workload("resnet50")
    # v1.5: the stride sits on the 3x3 conv of the first bottleneck of stages 2-4, and in its downsample.
    assert g.op("layer2.0.conv1").attrs["strides"] == (1, 1)
    assert g.op("layer2.0.conv2").attrs["strides"] == (2, 2)
    assert g.op("layer2.0.downsample.0").attrs["strides"] == (2, 2)
    assert g.tensors[g.op("layer1.0.downsample.0").outputs[0]].shape == (1, 256, 56, 56)  # channel change only
    assert "layer1.1.downsample.0" not in g.dag
    assert g.tensors[g.op("maxpool").outputs[0]].shape == (1, 64, 56, 56)
    assert g.tensors[g.op("layer4.2.relu").outputs[0]].shape == (1, 2048, 7, 7)
    assert sum(op.op_type == "Conv" for op in g.ops) == 53
    assert sum(op.op_type == "Conv" for op in load_workload("resnet18").ops) == 20


def test_mobilenet_layout():
    g = load_workload("mobilenet_v2")
    convs = [op for op in g.ops if op.op_type == "Conv"]
    assert len(convs) == 52   # stem + 17 blocks (first without expansion: 2 convs, others 3) + last 1x1
    depthwise = [op for op in convs if op.attrs["group"] > 1]
    assert len(depthwise) == 17
    assert all(op.attrs["group"] == g.tensors[op.inputs[0]].shape[1] for op in depthwise)
    clips = [op for op in g.ops if op.op_type == "Clip"]
    assert clips and all(op.attrs == {"min": 0.0, "max": 6.0} for op in clips)
    assert sum(op.op_type == "Add" for op in g.ops) == 10   # residuals where stride 1 and channels match
    assert [op.op_type for op in g.ops][-5:] == ["Clip", "GlobalAveragePool", "Flatten", "Dropout", "Gemm"]


def test_alexnet_layout():
    g = load_workload("alexnet")
    shape = lambda op: g.tensors[g.op(op).outputs[0]].shape  # noqa: E731
    # torchvision's Sequential indices: conv at 0, 3, 6, 8, 10; max pools at 2, 5, 12
    assert [op.name for op in g.ops if op.op_type == "Conv"] == [f"features.{i}" for i in (0, 3, 6, 8, 10)]
    assert [shape(f"features.{i}") for i in (0, 2, 3, 5, 6, 8, 10, 12)] == [
        (1, 64, 55, 55), (1, 64, 27, 27), (1, 192, 27, 27), (1, 192, 13, 13), (1, 384, 13, 13), (1, 256, 13, 13),
        (1, 256, 13, 13), (1, 256, 6, 6)]
    assert [op.op_type for op in g.ops][-8:] == ["Flatten", "Dropout", "Gemm", "Relu", "Dropout", "Gemm", "Relu",
                                                 "Gemm"]
    assert len(g.op("features.0").inputs) == 3                      # conv bias


def test_vgg16_layout():
    g = load_workload("vgg16")
    convs = [op for op in g.ops if op.op_type == "Conv"]
    assert len(convs) == 13 and all(op.attrs["strides"] == (1, 1) and op.attrs["pads"] == (1,) * 4 for op in convs)
    pools = [op.name for op in g.ops if op.op_type == "MaxPool"]
    assert pools == [f"features.{i}" for i in (4, 9, 16, 23, 30)]
    assert g.tensors[g.op("features.30").outputs[0]].shape == (1, 512, 7, 7)
    assert [op.op_type for op in g.ops][-8:] == ["Flatten", "Gemm", "Relu", "Dropout", "Gemm", "Relu", "Dropout",
                                                 "Gemm"]


def test_bert_attention_shapes():
    g = load_workload("bert-base")
    shape = lambda op: g.tensors[g.op(op).outputs[0]].shape  # noqa: E731
    assert shape("embeddings.word") == (1, 128, 768)
    assert shape("encoder.0.attn.q_t") == (1, 12, 128, 64)
    assert shape("encoder.0.attn.k_t") == (1, 12, 64, 128)
    assert shape("encoder.0.attn.scores") == (1, 12, 128, 128)
    assert shape("encoder.0.attn.context") == (1, 12, 128, 64)
    assert shape("encoder.0.attn.merge_heads") == (1, 128, 768)
    assert shape("encoder.11.ffn.up") == (1, 128, 3072)
    assert g.op("encoder.0.attn.softmax").attrs["axis"] == -1
    assert sum(op.op_type == "LayerNormalization" for op in g.ops) == 1 + 2 * 12


# ---------------------------------------------------------------- (b) parameter counts

def test_params_resnet50():
    assert params(load_workload("resnet50")) == 25_557_032   # torchvision resnet50


def test_params_resnet18():
    assert params(load_workload("resnet18")) == 11_689_512   # torchvision resnet18


def test_params_mobilenet_v2():
    assert params(load_workload("mobilenet_v2")) == 3_504_872   # torchvision mobilenet_v2


# By hand from torchvision's layer shapes: a conv has (C_in * R * S + 1) * C_out parameters, a Linear (in + 1) * out.
ALEXNET_CONVS = [(3, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3)]     # (C_in, C_out, R)
VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512),
               (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]                   # 3x3, (C_in, C_out)
ALEXNET_FC = [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
VGG16_FC = [(512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)]


def test_params_alexnet():
    convs = sum((c * r * r + 1) * k for c, k, r in ALEXNET_CONVS)
    fcs = sum((i + 1) * o for i, o in ALEXNET_FC)
    assert convs == 2_469_696 and fcs == 58_631_144
    assert params(load_workload("alexnet")) == convs + fcs == 61_100_840     # torchvision alexnet


def test_params_vgg16():
    convs = sum((c * 9 + 1) * k for c, k in VGG16_CONVS)
    fcs = sum((i + 1) * o for i, o in VGG16_FC)
    assert convs == 14_714_688 and fcs == 123_642_856
    assert params(load_workload("vgg16")) == convs + fcs == 138_357_544      # torchvision vgg16


def test_params_bert_base():
    # Per layer: Q, K, V, O 4*(768*768 + 768) = 2,362,368; FFN 768*3072 + 3072 + 3072*768 + 768 = 4,722,432;
    # two LayerNorms 2*2*768 = 3,072; total 7,087,872, times 12 = 85,054,464.
    # Embeddings: word 30522*768 = 23,440,896; position 512*768 = 393,216; token type 2*768 = 1,536;
    # LayerNorm 1,536; total 23,837,184.  Sum 108,891,648 = HF BertModel's 109,482,240 minus the pooler
    # (768*768 + 768 = 590,592).
    layer = 4 * (768 * 768 + 768) + (768 * 3072 + 3072 + 3072 * 768 + 768) + 2 * 2 * 768
    embeddings = 30522 * 768 + 512 * 768 + 2 * 768 + 2 * 768
    g = load_workload("bert-base")
    assert layer == 7_087_872 and embeddings == 23_837_184
    assert params(g) == 12 * layer + embeddings == 108_891_648
    in_layers = sum(t.elements for t in g.tensors.values() if t.is_param and t.name.startswith("encoder.")
                    and t.shape != (1,))
    assert in_layers == 85_054_464


# ---------------------------------------------------------------- (c) MACs by hand formula

def test_macs_resnet50():
    assert macs(load_workload("resnet50")) == pytest.approx(4.089e9, rel=0.01)   # exact: 4,089,184,256


def test_macs_resnet18():
    assert macs(load_workload("resnet18")) == pytest.approx(1.814e9, rel=0.01)   # exact: 1,814,073,344


def test_macs_mobilenet_v2():
    assert macs(load_workload("mobilenet_v2")) == pytest.approx(300e6, rel=0.03)   # exact: 300,774,272


def test_macs_alexnet():
    # conv: E * F * C_out * C_in * R * S; outputs 55x55 (stride 4, pad 2: (224 + 4 - 11) // 4 + 1), pools to 27,
    # 27x27, pools to 13, then three 13x13 convs; FC: in * out.
    sizes = [55, 27, 13, 13, 13]
    per_conv = [e * e * k * c * r * r for e, (c, k, r) in zip(sizes, ALEXNET_CONVS, strict=False)]
    assert per_conv == [70_276_800, 223_948_800, 112_140_288, 149_520_384, 99_680_256]
    fcs = sum(i * o for i, o in ALEXNET_FC)
    g = load_workload("alexnet")
    assert macs(g) == sum(per_conv) + fcs == 714_188_480
    assert sum(per_conv) == 655_566_528


def test_macs_vgg16():
    # 3x3 'same' convs at 224, 224, 112, 112, 56 x3, 28 x3, 14 x3: E * E * C_out * C_in * 9; FC: in * out.
    sizes = [224, 224, 112, 112, 56, 56, 56, 28, 28, 28, 14, 14, 14]
    convs = sum(e * e * k * c * 9 for e, (c, k) in zip(sizes, VGG16_CONVS, strict=False))
    fcs = sum(i * o for i, o in VGG16_FC)
    assert convs == 15_346_630_656 and fcs == 123_633_664
    assert macs(load_workload("vgg16")) == convs + fcs == 15_470_264_320     # the usual "15.47 GMACs"
    assert macs(load_workload("vgg16", batch=2)) == 2 * (convs + fcs)


@pytest.mark.parametrize("seq", [128, 384])
def test_macs_bert_base(seq):
    # Per layer: Q, K, V, O projections 4*S*768*768; FFN 2*S*768*3072; QK^T and (softmax)V 2*12*S*S*64.
    expected = 12 * (4 * seq * 768 * 768 + 2 * seq * 768 * 3072 + 2 * 12 * seq * seq * 64)
    assert macs(load_workload("bert-base", seq_len=seq)) == expected
    if seq == 128:
        assert expected == 11_173_625_856


@pytest.mark.parametrize("seq, batch", [(2048, 1), (512, 2)])
def test_attention_microbenchmark(seq, batch):
    # QK^T and PV: 2 * B * 32 heads * S^2 * 128; output (B, 32, S, 128); no learned parameters
    g = load_workload("attention", seq_len=seq, batch=batch, dtype="bf16")
    assert macs(g) == 2 * batch * 32 * seq * seq * 128
    assert g.tensors[g.outputs[0]].shape == (batch, 32, seq, 128) and params(g) == 0
    assert [op.op_type for op in g.ops] == ["MatMul", "Mul", "Softmax", "MatMul"]


def test_macs_scale_with_batch():
    assert macs(load_workload("resnet18", batch=3)) == 3 * macs(load_workload("resnet18"))


# ---------------------------------------------------------------- (d) bad specs

@pytest.mark.parametrize("spec, close", [("resnet5", "resnet50"), ("bert_bse", "bert-base"), ("zzz", None)])
def test_unknown_name(spec, close):
    with pytest.raises(InputError) as e:
        load_workload(spec)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("workload:") and f"'{spec}'" in msg
    assert ("allowed: alexnet, attention, bert-base, deepseek-v3, falcon-7b, gemm:M,N,K, gemma-2b, gemma2-9b, gpt2, "
            "llama2-7b, "
            "llama3-8b, llama3.1-70b, mistral-7b, mixtral-8x7b, mobilenet_v2, phi3-mini, qwen2.5-7b, qwen3-30b-a3b, "
            "resnet18, resnet50, vgg16, vit-b16") in msg
    assert (f"did you mean '{close}'?" in msg) if close else "did you mean" not in msg


@pytest.mark.parametrize("spec", ["gemm:1,2", "gemm:0,4,4", "gemm:a,b,c", "gemm:", "gemm:1,2,3,4", "gemm:-1,2,3",
                                  "gemm:1.5,2,3"])
def test_bad_gemm_spec(spec):
    with pytest.raises(InputError) as e:
        load_workload(spec)
    msg = str(e.value)
    assert msg.startswith("workload:") and "gemm:M,N,K" in msg and "positive integers" in msg and "\n" not in msg


@pytest.mark.parametrize("spec", ["model.xyz", "notes.txt", "dir/model"])
def test_file_specs_without_a_loader(spec):
    with pytest.raises(InputError, match=r"^workload: cannot read .*unsupported file type"):
        load_workload(spec)


@pytest.mark.parametrize("kwargs, flag", [({"batch": 0}, "--batch"), ({"batch": 1.5}, "--batch"),
                                          ({"seq_len": 0}, "--seq-len")])
def test_bad_sizes(kwargs, flag):
    with pytest.raises(InputError, match=f"^{flag}: must be a positive integer"):
        load_workload("bert-base", **kwargs)


def test_seq_len_rules():
    with pytest.raises(InputError, match=r"^seq_len: workload 'resnet50' has no sequence length"):
        load_workload("resnet50", seq_len=128)
    with pytest.raises(InputError, match=r"^seq_len: bert-base has 512 position embeddings"):
        load_workload("bert-base", seq_len=513)


def test_bad_dtype():
    with pytest.raises(InputError, match="dtype"):
        load_workload("resnet18", dtype="fp64")


# ---------------------------------------------------------------- (e) gemm:M,N,K

@pytest.mark.parametrize("m, n, k", [(1, 4096, 4096), (128, 64, 256), (3, 5, 7)])
def test_gemm_macs(m, n, k):
    g = load_workload(f"gemm:{m},{n},{k}")
    assert [op.op_type for op in g.ops] == ["MatMul"]
    assert g.tensors[g.outputs[0]].shape == (m, n)
    assert macs(g) == m * n * k
    assert sum(t.elements for t in g.tensors.values() if t.is_param) == k * n


def test_gemm_batch_and_spaces():
    g = load_workload("GEMM: 2, 3, 4", batch=5)
    assert g.tensors[g.outputs[0]].shape == (5, 2, 3)
    assert macs(g) == 5 * 2 * 3 * 4


def test_built_in_graphs_are_remembered_by_their_arguments():
    """load_workload keeps the graphs it built (BUILT_KEPT, least recently used dropped): the same arguments give
    the same graph (a warm process skips building and grouping it again), any other argument another graph."""
    first = load_workload("resnet18", batch=2)
    assert load_workload(" ResNet18 ", batch=2) is first                  # the same workload, as it is spelled
    assert load_workload("resnet18", batch=3) is not first
    assert load_workload("resnet18", batch=3).tensors[first.inputs[0]].shape[0] == 3
    assert load_workload("resnet18", batch=2, dtype="fp16") is not first
    gemm = load_workload("gemm:64,32,16")
    assert load_workload("gemm:64,32,16") is gemm and load_workload("gemm:64,32,8") is not gemm
    decode = load_workload("llama3-8b", phase="decode", context=128, batch=1)
    assert load_workload("llama3-8b", phase="decode", context=128, batch=1) is decode
    assert load_workload("llama3-8b", phase="decode", context=256, batch=1) is not decode
    assert load_workload("llama3-8b", phase="decode", context=128, batch=1, dtypes=("int4", None, None)) is not decode
    for i in range(BUILT_KEPT):                                  # the least recently used is dropped
        load_workload(f"gemm:{8 + i},8,8")
    assert load_workload("gemm:64,32,16") is not gemm
