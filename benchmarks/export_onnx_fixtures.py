"""Write the torch-exported ONNX fixtures in tests/data/onnx/ (by hand, not a test; needs torch, torchvision, onnx
and onnxscript, none of which tilesim or its tests need):

    python benchmarks/export_onnx_fixtures.py [--out tests/data/onnx]

Random weights, eval mode. The files keep every initializer's shape but not its data: tensors over 1 KiB are
marked as external data in a file that is not written (`<name>.onnx.data`), so each fixture is a few hundred KiB.
The importer reads shapes only (onnx.load(..., load_external_data=False)), so it takes these files as they are.

- resnet18.onnx: torchvision ResNet-18 through the TorchScript exporter (dynamo=False), opset 17, with
  training=PRESERVE and do_constant_folding=False so that BatchNormalization stays a separate op, as in the
  built-in `resnet18` (in EVAL mode the exporter folds each BatchNorm into the preceding Conv). The same graph op
  for op, hence the same cycles and energy.
- mobilenet_v2.onnx: torchvision MobileNetV2 through the dynamo exporter, opset 18 (BatchNorm folded into the
  convs, ReLU6 as Clip with min/max inputs, the global pool as ReduceMean, flatten as Reshape).
- bert2.onnx: a two-layer BERT encoder (BERT-base sizes: d 768, 12 heads, FFN 3072, vocab 30522; written out in
  plain torch, the same structure as workloads/transformer.py) through the dynamo exporter, opset 18, with
  symbolic `batch` and `seq` dimensions (bind them with --dim, --batch and --seq-len).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import onnx
import torch
import torchvision
from onnx.external_data_helper import set_external_data
from torch import nn

INLINE_LIMIT = 1024   # bytes: smaller tensors (shape constants, scalars) keep their data


def strip_weights(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """Mark every initializer over INLINE_LIMIT bytes as external data in `location` (never written)."""
    offset = 0
    for t in model.graph.initializer:
        if not t.HasField("raw_data"):
            t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t), t.name))
        size = len(t.raw_data)
        if size <= INLINE_LIMIT:
            continue
        set_external_data(t, location, offset=offset, length=size)   # needs raw_data present
        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        offset += size
    return model


def legacy_export(module: nn.Module, args: tuple, opset: int) -> onnx.ModelProto:
    """TorchScript exporter with BatchNorm kept as its own op (no eval-mode Conv+BN folding)."""
    path = Path("/tmp/_tilesim_export.onnx")
    torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE, input_names=["input"], output_names=["logits"])
    model = onnx.load(str(path))
    path.unlink()
    return model


def dynamo_export(module: nn.Module, args: tuple, opset: int, **kwargs) -> onnx.ModelProto:
    """torch.export-based exporter (with its default graph optimisation)."""
    return torch.onnx.export(module, args, dynamo=True, opset_version=opset, verbose=False, **kwargs).model_proto


class SelfAttention(nn.Module):
    """BERT self-attention: Q, K, V projections, softmax(QK^T / sqrt(d_head)) V, output projection."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        b, s, d = x.shape
        q = self.q(x).view(b, s, self.heads, self.hd).transpose(1, 2)
        k = self.k(x).view(b, s, self.heads, self.hd).permute(0, 2, 3, 1)
        v = self.v(x).view(b, s, self.heads, self.hd).transpose(1, 2)
        probs = torch.softmax(q @ k * (1.0 / math.sqrt(self.hd)), dim=-1)
        return self.out((probs @ v).transpose(1, 2).reshape(b, s, d))


class EncoderLayer(nn.Module):
    """Post-LN block: LN(x + Attn(x)), then LN(h + FFN(h)) with an exact (erf) GELU."""

    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.attn, self.ln1 = SelfAttention(d, heads), nn.LayerNorm(d, eps=1e-12)
        self.up, self.down, self.ln2 = nn.Linear(d, ffn), nn.Linear(ffn, d), nn.LayerNorm(d, eps=1e-12)

    def forward(self, x):
        h = self.ln1(x + self.attn(x))
        return self.ln2(h + self.down(torch.nn.functional.gelu(self.up(h))))


class Bert(nn.Module):
    """Embeddings (word + token type 0 + position, LayerNorm) and `layers` encoder layers; no mask, no pooler."""

    def __init__(self, layers: int = 2, d: int = 768, heads: int = 12, ffn: int = 3072, vocab: int = 30522):
        super().__init__()
        self.word, self.position, self.token_type = nn.Embedding(vocab, d), nn.Embedding(512, d), nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(EncoderLayer(d, heads, ffn) for _ in range(layers))
        self.register_buffer("position_ids", torch.arange(512).unsqueeze(0), persistent=False)

    def forward(self, input_ids):
        seq = input_ids.shape[1]
        x = self.word(input_ids) + self.token_type.weight[:1] + self.position(self.position_ids[:, :seq])
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x)
        return x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "data" / "onnx"))
    out = Path(p.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    image = torch.randn(1, 3, 224, 224)
    models = {
        "resnet18": legacy_export(torchvision.models.resnet18().eval(), (image,), 17),
        "mobilenet_v2": dynamo_export(torchvision.models.mobilenet_v2().eval(), (image,), 18),
        "bert2": dynamo_export(Bert().eval(), (torch.randint(0, 30522, (1, 128)),), 18,
                               input_names=["input_ids"],
                               dynamic_shapes=({0: torch.export.Dim("batch", max=64),
                                                1: torch.export.Dim("seq", min=2, max=512)},)),
    }
    for name, model in models.items():
        path = out / f"{name}.onnx"
        onnx.save(strip_weights(model, f"{name}.onnx.data"), str(path))
        print(f"{path}: {path.stat().st_size:,} bytes, {len(model.graph.node)} nodes")


if __name__ == "__main__":
    main()
