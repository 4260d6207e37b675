"""Export Hugging Face transformers models to ONNX with torch, import each with tilesim, and print a table (by hand,
not a test; needs torch, transformers, onnx and, for the dynamo exporter, onnxscript, none of which tilesim needs):

    python benchmarks/export_hf_onnx.py [--models gpt2,llama3-8b,...] [--exporters legacy,dynamo] [--layers 2]
                                        [--seq-len 128] [--arch tpu-v4] [--out /tmp/tilesim-hf-onnx]
                                        [--torch-dtype bf16] [--vocab gemma2-9b=32000] [--shapes-only mixtral-8x7b]
                                        [--set num_local_experts=4,hidden_size=1024]
    python benchmarks/export_hf_onnx.py --fixtures tests/data/onnx      # no torch: import and time the fixtures

Each model is built from its HF config (the built-in's config.json, or the numbers of the built-ins defined in
workloads/llm.py) cut to `--layers` layers, with random weights, in eval mode, without a KV cache, and called as
`model(input_ids, attention_mask=ones, logits_to_keep=1)` (one unpadded sequence; logits of the last position
only, as tilesim's decoders compute them). Shapes are static (batch 1, `--seq-len` tokens). Then:
- torch MACs: torch.utils.flop_counter.FlopCounterMode over that forward call, flops / 2 (the independent counter);
- the export: legacy TorchScript exporter (opset 17) and/or the dynamo exporter (opset 18);
- the import: tilesim's ONNX importer (activations and weights bf16), its MACs, and its kernels and cycles under
  `--fusion full` on `--arch`;
- the built-in: tilesim's decoder from the same config (prefill of `--seq-len` tokens, bf16), its MACs, kernels
  and cycles; the cycles column is (ONNX - built-in) / built-in.
A model that does not import prints the importer's one-line error instead.
For memory (the large models' exports need several times their weights' bytes), `--torch-dtype bf16` builds and
exports the model in bf16, `--vocab model=N` cuts a vocabulary (the row says so), and `--shapes-only model,...`
exports the parameters as inputs and rewrites them as initializers of shape only (the importer reads no values), with
MoE experts sharing one expert's storage. Each changes weight values or the vocabulary only, never the shapes the
table compares.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import onnx
import onnx.external_data_helper

from tilesim.arch import load_arch
from tilesim.arch.errors import InputError
from tilesim.compiler.fusion import AttentionWork
from tilesim.compiler.lowering import graph_macs
from tilesim.compiler.schedule import CompileOptions, lower
from tilesim.core.simulate import simulate
from tilesim.workloads import llm
from tilesim.workloads.onnx import load_onnx

# PyPI's torchvision wheel is built against CUDA torch: with the CPU torch its compiled detection ops (nms,
# roi_align) do not load and registering their fake kernels raises at import, in torchvision and in transformers
# (which imports it). The classification models use none of them, so that module is skipped.
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

try:                                  # --fixtures needs neither
    import torch
    import transformers
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
except ImportError:
    torch = transformers = FlopCounterMode = SDPBackend = sdpa_kernel = None

# HF config.json fields of the built-ins kept in workloads/llm.py as DecoderConfig (their values: that module)
HF_CONFIGS = {
    "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
             "n_positions": 1024, "activation_function": "gelu_new"},
    "llama2-7b": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
                  "num_key_value_heads": 32, "num_hidden_layers": 32, "vocab_size": 32000,
                  "max_position_embeddings": 4096},
    "llama3-8b": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "num_hidden_layers": 32, "vocab_size": 128256,
                  "max_position_embeddings": 8192, "rope_theta": 500000.0},
    "mistral-7b": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32, "vocab_size": 32000,
                   "max_position_embeddings": 32768, "sliding_window": 4096},
    "gemma-2b": {"model_type": "gemma", "hidden_size": 2048, "intermediate_size": 16384, "num_attention_heads": 8,
                 "num_key_value_heads": 1, "head_dim": 256, "num_hidden_layers": 18, "vocab_size": 256000,
                 "max_position_embeddings": 8192, "hidden_activation": "gelu_pytorch_tanh"},
}
DEFAULT_MODELS = ("gpt2", "llama3-8b", "mistral-7b", "gemma-2b", "qwen2.5-7b", "phi3-mini", "gemma2-9b",
                  "falcon-7b", "mixtral-8x7b")


def hf_config(name: str, layers: int, vocab: int | None = None) -> dict:
    """The model's HF config dict cut to `layers` layers (per-layer lists cut alike), its vocabulary cut to
    `vocab` tokens when given and smaller."""
    if name in HF_CONFIGS:
        raw = dict(HF_CONFIGS[name])
    else:
        raw = json.loads((llm.CONFIG_DIR / f"{name}.json").read_text())
    key = "n_layer" if "n_layer" in raw else "num_hidden_layers"
    raw[key] = min(raw[key], layers)
    if isinstance(raw.get("layer_types"), list):
        raw["layer_types"] = raw["layer_types"][:raw[key]]
    raw.pop("quantization_config", None)
    if vocab is not None:
        key = "vocab_size"
        raw[key] = min(raw[key], vocab)
    return raw


def torch_model(raw: dict, dtype: str = "fp32"):
    """A transformers causal LM of this config with random weights in `dtype` (fp32 or bf16), eval mode, as a
    module taking input_ids and returning the last position's logits."""
    config = transformers.AutoConfig.for_model(**{k: v for k, v in raw.items() if not k.startswith("_")})
    config.use_cache = False
    moe = {"experts_implementation": "eager"} if any("experts" in k for k in raw) else {}   # a loop over the experts
    model = transformers.AutoModelForCausalLM.from_config(   # hit (grouped_mm has no ONNX form; batched_mm would
        config, attn_implementation="eager", dtype=torch.bfloat16 if dtype == "bf16" else torch.float32,   # copy
        **moe).eval()                                                                  # each token's expert weights)

    class LastLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids):   # an all-ones mask, as a tokenizer gives one unpadded sequence
            mask = torch.ones_like(input_ids)
            return self.model(input_ids=input_ids, attention_mask=mask, logits_to_keep=1, use_cache=False).logits
    return LastLogits().eval()


def torch_macs(module, ids) -> int:
    """MACs of one forward call by torch's own counter (FlopCounterMode: 2 flops per MAC of mm/bmm/conv).
    scaled_dot_product_attention runs its math backend here: the CPU's fused kernel
    (_scaled_dot_product_flash_attention_for_cpu) has no flop formula, so its QK^T and PV would not be counted."""
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        module(ids)
    return counter.get_total_flops() // 2


def export(module, ids, exporter: str, path: Path, input_name: str = "input_ids", output_name: str = "logits",
           weights: bool = True) -> None:
    """Write the ONNX file: legacy TorchScript exporter at opset 17, or dynamo at opset 18. Without `weights`, the
    parameters are exported as graph inputs and then made initializers of shape only (shape_only_weights)."""
    with torch.no_grad():
        if exporter == "legacy":
            torch.onnx.export(module, (ids,), str(path), dynamo=False, opset_version=17, export_params=weights,
                              input_names=[input_name], output_names=[output_name])
        else:
            torch.onnx.export(module, (ids,), dynamo=True, opset_version=18).save(
                str(path), include_initializers=weights, keep_initializers_as_inputs=not weights)
    if not weights:
        shape_only_weights(path, keep={input_name} | {i.name for i in onnx.load(str(path)).graph.initializer})


def export_error(e: Exception) -> str:
    """The exporter's failure in one line: torch.onnx's own summary line where it gives one (the cause under
    '## Exception summary'), else the exception's first line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    summary = [ln for k, ln in enumerate(lines[1:]) if lines[k].startswith("## Exception summary")]
    return f"export failed: {type(e).__name__}: {(summary or lines or [''])[0][:160]}"


def shape_only_weights(path: Path, keep: set[str]) -> None:
    """Every graph input not in `keep` (the exported parameters) made an initializer holding its shape and type only,
    marked as external data in a file that is never written, as a model whose `.onnx.data` file is missing: the
    importer reads shapes only (docs/onnx.md), the exporters' memory for the weights' bytes is saved."""
    model = onnx.load(str(path))
    params = [i for i in model.graph.input if i.name not in keep]
    for i in params:
        tt = i.type.tensor_type
        t = onnx.TensorProto(name=i.name, data_type=tt.elem_type, dims=[d.dim_value for d in tt.shape.dim],
                             raw_data=b"")
        onnx.external_data_helper.set_external_data(t, "weights-not-written.data")   # needs raw_data set
        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        model.graph.initializer.append(t)
        model.graph.input.remove(i)
    onnx.save(model, str(path))


def share_expert_weights(model) -> None:
    """Each MoE experts module's stacked weights (experts, rows, cols) made one expert's storage seen by all (a
    stride-0 view): the same shapes, routing and MACs in a fraction of the memory; random values only differ."""
    for module in model.modules():
        if type(module).__name__.endswith("Experts"):
            for name, p in list(module.named_parameters(recurse=False)):
                if p.dim() == 3:
                    setattr(module, name, torch.nn.Parameter(p.data[:1].clone().expand(p.shape),
                                                             requires_grad=False))


def simulated(graph, arch) -> tuple[str, int]:
    """(kernels, cycles) of a graph under --fusion full; kernels as 'N' or, with flash-attention kernels among
    them, 'N (F flash)'."""
    sched = lower(graph, arch, CompileOptions(fusion="full"))
    flash = sum(isinstance(k.work, AttentionWork) for k in sched.kernels)
    return f"{len(sched.kernels)}" + (f" ({flash} flash)" if flash else ""), simulate(sched, arch).cycles


def import_row(path: Path, arch, batch: int, seq_len: int | None) -> dict:
    """The ONNX file imported: nodes, MACs, kernels, cycles and import time, or the importer's error."""
    nodes = len(onnx.load(str(path), load_external_data=False).graph.node)
    start = time.perf_counter()
    try:
        graph = load_onnx(str(path), batch=batch, seq_len=seq_len, dtype="bf16")
    except InputError as e:
        return {"nodes": nodes, "error": str(e)[:160]}
    except Exception as e:      # a tilesim bug: reported in the table, not hidden
        return {"nodes": nodes, "error": f"tilesim crashed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"}
    seconds = time.perf_counter() - start
    kernels, cycles = simulated(graph, arch)
    return {"nodes": nodes, "macs": graph_macs(graph), "kernels": kernels, "cycles": cycles, "import_s": seconds}


def model_rows(name: str, args, arch) -> list[dict]:
    """One row per exporter for model `name`."""
    raw = hf_config(name, args.layers, args.vocab.get(name)) | args.set
    cfg = llm.config_from_hf(raw, f"{name}.json")
    builtin = llm.prefill_graph(cfg, 1, args.seq_len, "bf16")
    b_kernels, b_cycles = simulated(builtin, arch)
    torch.manual_seed(0)
    module = torch_model(raw, args.torch_dtype)
    weights = name not in args.shapes_only
    if not weights:
        share_expert_weights(module)
    ids = torch.randint(0, cfg.vocab, (1, args.seq_len))
    macs = torch_macs(module, ids)
    rows = []
    for exporter in args.exporters:
        folder = args.out / f"{name}.{exporter}"     # one folder each: >2 GiB exports write their external data
        folder.mkdir(parents=True, exist_ok=True)    # files beside the model, named after the tensors
        path = folder / "model.onnx"
        reuse = args.reimport and path.exists()
        label = name + (f" (vocab {raw['vocab_size']:,})" if name in args.vocab else "") + \
            ("" if weights else " (shapes only)") + \
            (f" ({', '.join(f'{k}={v}' for k, v in args.set.items())})" if args.set else "")
        row = {"model": label, "exporter": exporter, "torch_macs": macs, "builtin_macs": graph_macs(builtin),
               "builtin_kernels": b_kernels, "builtin_cycles": b_cycles}
        start = time.perf_counter()
        try:
            if not reuse:
                export(module, ids, exporter, path, weights=weights)
                row["export_s"] = time.perf_counter() - start
        except Exception as e:      # the exporter's own failure is a result of this table, not a crash
            rows.append(row | {"error": export_error(e)})
            continue
        rows.append(row | import_row(path, arch, 1, None))
        print(table([rows[-1]]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table: model, exporter, ONNX nodes, imported, MACs (ONNX / torch / built-in), kernels, cycles."""
    head = ("| model | exporter | ONNX nodes | imported | MACs (tilesim ONNX) | vs torch | vs built-in | kernels "
            "(ONNX / built-in) | cycles vs built-in | import s | export s |\n" + "|---" * 11 + "|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['exporter']} | {r.get('nodes', '-')} | no: {r['error']} "
                         "| | | | | | | |")
            continue
        ratio = lambda a, b: "exact" if a == b else f"{(a - b) / b:+.2%}" if b else "-"   # noqa: E731
        lines.append(f"| {r['model']} | {r['exporter']} | {r['nodes']} | yes | {r['macs'] / 1e9:,.3f} G | "
                     f"{ratio(r['macs'], r['torch_macs']) if 'torch_macs' in r else '-'} | "
                     f"{ratio(r['macs'], r['builtin_macs']) if 'builtin_macs' in r else '-'} | "
                     f"{r['kernels']} / {r.get('builtin_kernels', '-')} | "
                     f"{ratio(r['cycles'], r['builtin_cycles']) if 'builtin_cycles' in r else '-'} | "
                     f"{r['import_s']:.2f} | {round(r['export_s']) if 'export_s' in r else '-'} |")
    return "\n".join(lines)


def fixture_rows(folder: Path, arch) -> list[dict]:
    """The fixtures in `folder` imported (no torch needed): nodes, MACs, kernels, cycles, import time; a symbolic
    sequence dimension is bound to 128."""
    rows = []
    for p in sorted(folder.glob("*.onnx")):
        inputs = onnx.load(str(p), load_external_data=False).graph.input
        seq = any("seq" in d.dim_param for i in inputs for d in i.type.tensor_type.shape.dim)
        rows.append({"model": p.stem, "exporter": "fixture"} | import_row(p, arch, 1, 128 if seq else None))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--exporters", default="legacy,dynamo")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--vocab", default="", help="vocabularies cut for memory, as model=tokens,... (the table "
                    "says which); MACs of the embedding lookup and the last position's logits shrink alike")
    ap.add_argument("--shapes-only", default="", help="models exported without weight values (initializers of "
                    "shape only; MoE experts share one expert's storage) for the exporters' memory")
    ap.add_argument("--torch-dtype", choices=("fp32", "bf16"), default="fp32",
                    help="dtype of the torch model and its export (bf16 halves the exporter's memory)")
    ap.add_argument("--set", default="", help="config fields set for every model, as key=value,... (integers), "
                    "e.g. a small Mixtral: num_local_experts=4,hidden_size=1024 (the table's model name lists them)")
    ap.add_argument("--arch", default="tpu-v4")
    ap.add_argument("--out", type=Path, default=Path("/tmp/tilesim-hf-onnx"))
    ap.add_argument("--reimport", action="store_true", help="import the exports already in --out (no export)")
    ap.add_argument("--fixtures", type=Path, help="import the .onnx files of this folder instead (no torch)")
    args = ap.parse_args()
    arch = load_arch(args.arch)
    if args.fixtures:
        print(table(fixture_rows(args.fixtures, arch)))
        return
    args.exporters = args.exporters.split(",")
    args.shapes_only = set(filter(None, args.shapes_only.split(",")))
    args.vocab = {k: int(v) for k, v in (kv.split("=") for kv in args.vocab.split(",") if kv)}
    args.set = {k: int(v) for k, v in (kv.split("=") for kv in args.set.split(",") if kv)}
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        rows += model_rows(name, args, arch)
    print(f"{args.layers} layers, seq {args.seq_len}, batch 1, bf16, {args.arch}, --fusion full")
    print(table(rows))


if __name__ == "__main__":
    main()
