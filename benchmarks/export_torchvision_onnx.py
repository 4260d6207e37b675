"""Export torchvision classification models to ONNX with torch, import each with tilesim, and print a table (by hand,
not a test; needs torch, torchvision, onnx and, for the dynamo exporter, onnxscript, none of which tilesim needs):

    python benchmarks/export_torchvision_onnx.py [--models resnet50,vit_b_16,...|all] [--exporters legacy,dynamo]
                                                 [--arch tpu-v4] [--out /tmp/tilesim-tv-onnx]

Each model is torchvision's architecture with random weights (no download), in eval mode, batch 1 at its own input
size (299 x 299 for inception_v3, 224 x 224 otherwise). Then, as benchmarks/export_hf_onnx.py does for the language
models (its table and import code are reused):
- torch MACs: torch.utils.flop_counter.FlopCounterMode over the forward call, flops / 2 (the independent counter);
- the export: legacy TorchScript exporter (opset 17) and/or the dynamo exporter (opset 18), one at a time;
- the import: tilesim's ONNX importer (bf16), its MACs, and its kernels and cycles under `--fusion full` on `--arch`.
`--models all` is every model of torchvision.models (classification), the default list (docs/onnx.md) first.
A model that does not export or import prints the error instead; a row is printed to stderr as it finishes.
"""
from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from pathlib import Path

from export_hf_onnx import export, export_error, import_row, table, torch, torch_macs

# isort: split
import torchvision.models as tvm  # after export_hf_onnx, which makes it importable with the CPU torch

from tilesim.arch import load_arch

DEFAULT_MODELS = ("alexnet", "vgg11", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "googlenet",
                  "inception_v3", "squeezenet1_0", "squeezenet1_1", "densenet121", "mobilenet_v2",
                  "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet1_0", "shufflenet_v2_x1_0", "efficientnet_b0",
                  "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny", "vit_b_16", "swin_t",
                  "swin_v2_t", "maxvit_t")
INPUT_SIZE = {"inception_v3": 299}        # torchvision's documented input size; 224 for every other model


def torchvision_model(name: str):
    """torchvision's `name` with random weights in eval mode (aux heads off: they run in training only)."""
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return tvm.get_model(name, weights=None, **kwargs).eval()


# nn.MultiheadAttention's inference fast path (eval and no grad: vit_*) runs aten::_native_multi_head_attention,
# which the legacy exporter cannot export and FlopCounterMode does not count; off, the count and both exports see
# the same math path (in_proj MatMul, softmax(QK^T)V, out_proj)
torch.backends.mha.set_fastpath_enabled(False)


def model_rows(name: str, args, arch) -> list[dict]:
    """One row per exporter for torchvision model `name`."""
    torch.manual_seed(0)
    module = torchvision_model(name)
    size = INPUT_SIZE.get(name, 224)
    x = torch.randn(1, 3, size, size)
    macs = torch_macs(module, x)
    rows = []
    for exporter in args.exporters:
        folder = args.out / f"{name}.{exporter}"   # one folder each: a > 2 GiB export writes its external data
        folder.mkdir(parents=True, exist_ok=True)  # beside the model (the legacy exporter a file per tensor)
        path = folder / "model.onnx"
        row = {"model": name, "exporter": exporter, "torch_macs": macs}
        start = time.perf_counter()
        try:
            export(module, x, exporter, path, input_name="x", output_name="logits")
            row["export_s"] = time.perf_counter() - start
        except Exception as e:      # the exporter's own failure is a result of this table, not a crash
            rows.append(row | {"error": export_error(e)})
        else:
            rows.append(row | import_row(path, arch, 1, None))
        shutil.rmtree(folder)       # the next export's room (vit_h_14's weights are 2.5 GB in fp32)
        print(table([rows[-1]]).splitlines()[-1], file=sys.stderr, flush=True)
    del module
    gc.collect()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated, or all")
    ap.add_argument("--exporters", default="legacy,dynamo")
    ap.add_argument("--arch", default="tpu-v4")
    ap.add_argument("--skip", default="", help="models left out (comma-separated), e.g. those whose export needs "
                    "more memory than the machine has")
    ap.add_argument("--out", type=Path, default=Path("/tmp/tilesim-tv-onnx"))
    args = ap.parse_args()
    names = args.models.split(",")
    if args.models == "all":      # the default list first, then the rest of torchvision.models
        names = [*DEFAULT_MODELS, *(n for n in tvm.list_models(module=tvm) if n not in DEFAULT_MODELS)]
    names = [n for n in names if n not in args.skip.split(",")]
    args.exporters = args.exporters.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    arch = load_arch(args.arch)
    rows = []
    for name in names:
        rows += model_rows(name, args, arch)
    print(f"batch 1, bf16, {args.arch}, --fusion full")
    print(table(rows))


if __name__ == "__main__":
    main()
