"""CNN workloads in torchvision's layouts: ResNet-18, ResNet-50 (v1.5), MobileNetV2, AlexNet and VGG-16, on 3x224x224
inputs."""
from __future__ import annotations

from tilesim.compiler import Graph, GraphBuilder

# Op names follow torchvision's module names (conv1, layer1.0.conv1, layer1.0.downsample.0, features.3.dw, fc)
# so a kernel in a report can be traced back to the PyTorch model.
IMAGE = (3, 224, 224)
NUM_CLASSES = 1000


def _conv_bn(b: GraphBuilder, x: str, filters: int, kernel: int, stride: int, name_conv: str, name_bn: str,
             groups: int = 1, act: str | None = None, name_act: str = "") -> str:
    """Bias-free Conv ('same' padding for odd kernels), BatchNormalization, optional Relu or ReLU6."""
    y = b.conv(x, filters, kernel, stride=stride, pad=kernel // 2, groups=groups, name=name_conv)
    y = b.batchnorm(y, name=name_bn)
    if act == "relu":
        y = b.add("Relu", [y], name=name_act)
    elif act == "relu6":  # torch.nn.ReLU6 exports to ONNX as Clip(0, 6)
        y = b.add("Clip", [y], {"min": 0.0, "max": 6.0}, name=name_act)
    return y


def _classifier(b: GraphBuilder, x: str, dropout: float | None = None, name: str = "fc") -> str:
    """GlobalAveragePool, Flatten, optional Dropout and a Gemm to 1000 classes (weight (out, in), transB=1)."""
    y = b.add("GlobalAveragePool", [x], name="avgpool")
    y = b.add("Flatten", [y], {"axis": 1}, name="flatten")
    if dropout is not None:
        y = b.add("Dropout", [y], {"ratio": dropout}, name="dropout")
    w = b.param(f"{name}.w", (NUM_CLASSES, b.shape(y)[1]))
    return b.add("Gemm", [y, w, b.param(f"{name}.b", (NUM_CLASSES,))], {"transB": 1}, name=name)


# ---------------------------------------------------------------- ResNet
# torchvision.models.resnet: BasicBlock (expansion 1) and Bottleneck (expansion 4, stride on the 3x3 conv: v1.5).

def _shortcut(b: GraphBuilder, x: str, out_ch: int, stride: int, p: str) -> str:
    """Identity, or 1x1 conv + BN (`downsample.0`, `downsample.1`) where the shape changes."""
    if stride == 1 and b.shape(x)[1] == out_ch:
        return x
    return _conv_bn(b, x, out_ch, 1, stride, f"{p}.downsample.0", f"{p}.downsample.1")


def _basic_block(b: GraphBuilder, x: str, planes: int, stride: int, p: str) -> str:
    """3x3 -> 3x3 with a residual Add, then Relu."""
    y = _conv_bn(b, x, planes, 3, stride, f"{p}.conv1", f"{p}.bn1", act="relu", name_act=f"{p}.relu1")
    y = _conv_bn(b, y, planes, 3, 1, f"{p}.conv2", f"{p}.bn2")
    y = b.add("Add", [y, _shortcut(b, x, planes, stride, p)], name=f"{p}.add")
    return b.add("Relu", [y], name=f"{p}.relu")


def _bottleneck(b: GraphBuilder, x: str, planes: int, stride: int, p: str) -> str:
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand x4, with a residual Add, then Relu."""
    y = _conv_bn(b, x, planes, 1, 1, f"{p}.conv1", f"{p}.bn1", act="relu", name_act=f"{p}.relu1")
    y = _conv_bn(b, y, planes, 3, stride, f"{p}.conv2", f"{p}.bn2", act="relu", name_act=f"{p}.relu2")
    y = _conv_bn(b, y, planes * 4, 1, 1, f"{p}.conv3", f"{p}.bn3")
    y = b.add("Add", [y, _shortcut(b, x, planes * 4, stride, p)], name=f"{p}.add")
    return b.add("Relu", [y], name=f"{p}.relu")


def _resnet(name: str, block, stages: list[int], batch: int, dtype: str) -> Graph:
    """Stem (7x7/2 conv, BN, Relu, 3x3/2 max pool), four stages of 64/128/256/512 planes, classifier."""
    b = GraphBuilder(name, dtype)
    x = b.input("input", (batch, *IMAGE))
    x = _conv_bn(b, x, 64, 7, 2, "conv1", "bn1", act="relu", name_act="relu")
    x = b.add("MaxPool", [x], {"kernel_shape": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}, name="maxpool")
    for s, (planes, blocks) in enumerate(zip((64, 128, 256, 512), stages, strict=False), start=1):
        for i in range(blocks):
            x = block(b, x, planes, 2 if i == 0 and s > 1 else 1, f"layer{s}.{i}")
    return b.build(_classifier(b, x))


def resnet18(batch: int = 1, dtype: str = "int8") -> Graph:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11.69 M parameters, 1.81 GMACs."""
    return _resnet("resnet18", _basic_block, [2, 2, 2, 2], batch, dtype)


def resnet50(batch: int = 1, dtype: str = "int8") -> Graph:
    """ResNet-50 v1.5: bottlenecks [3, 4, 6, 3]; 25.56 M parameters, 4.09 GMACs."""
    return _resnet("resnet50", _bottleneck, [3, 4, 6, 3], batch, dtype)


# ---------------------------------------------------------------- MobileNetV2
# torchvision.models.mobilenetv2 (width 1.0): expansion t, output channels c, repeats n, first stride s.
INVERTED_RESIDUALS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _inverted_residual(b: GraphBuilder, x: str, t: int, out_ch: int, stride: int, p: str) -> str:
    """1x1 expand (skipped when t = 1), 3x3 depthwise, linear 1x1 project; residual when the shape is kept."""
    in_ch = b.shape(x)[1]
    hidden = in_ch * t
    y = x
    if t != 1:
        y = _conv_bn(b, y, hidden, 1, 1, f"{p}.expand", f"{p}.expand_bn", act="relu6", name_act=f"{p}.expand_relu6")
    y = _conv_bn(b, y, hidden, 3, stride, f"{p}.dw", f"{p}.dw_bn", groups=hidden, act="relu6", name_act=f"{p}.dw_relu6")
    y = _conv_bn(b, y, out_ch, 1, 1, f"{p}.project", f"{p}.project_bn")
    if stride == 1 and in_ch == out_ch:
        y = b.add("Add", [x, y], name=f"{p}.add")
    return y


def mobilenet_v2(batch: int = 1, dtype: str = "int8") -> Graph:
    """MobileNetV2 (width 1.0): 3x3/2 stem to 32, 17 inverted residuals, 1x1 to 1280, dropout 0.2, FC 1000."""
    b = GraphBuilder("mobilenet_v2", dtype)
    x = b.input("input", (batch, *IMAGE))
    x = _conv_bn(b, x, 32, 3, 2, "features.0.conv", "features.0.bn", act="relu6", name_act="features.0.relu6")
    index = 1
    for t, c, n, s in INVERTED_RESIDUALS:
        for i in range(n):
            x = _inverted_residual(b, x, t, c, s if i == 0 else 1, f"features.{index}")
            index += 1
    x = _conv_bn(b, x, 1280, 1, 1, f"features.{index}.conv", f"features.{index}.bn", act="relu6",
                 name_act=f"features.{index}.relu6")
    return b.build(_classifier(b, x, dropout=0.2, name="classifier.1"))


# ---------------------------------------------------------------- AlexNet and VGG-16
# torchvision.models.alexnet and vgg16: `features` is a Sequential of Conv2d (with bias) + ReLU and MaxPool2d, then a
# three-layer `classifier`. Op names are the Sequential indices (features.0 is the first conv, features.1 its ReLU).
# The AdaptiveAvgPool2d((6, 6)) / ((7, 7)) between them is the identity on 224x224 inputs (the features are
# already 6x6 / 7x7), so it is left out. Linear exports to ONNX as Gemm with weight (out, in), transB=1.

# features as torchvision lists them: ("conv", filters, kernel, stride, pad) (a ReLU follows each) or
# ("pool", kernel, stride) (MaxPool2d, no padding, floor mode)
ALEXNET_FEATURES = [("conv", 64, 11, 4, 2), ("pool", 3, 2), ("conv", 192, 5, 1, 2), ("pool", 3, 2),
                    ("conv", 384, 3, 1, 1), ("conv", 256, 3, 1, 1), ("conv", 256, 3, 1, 1), ("pool", 3, 2)]
# VGG-16 is configuration D (Simonyan and Zisserman, ICLR 2015): 3x3 convs, stride 1, pad 1; 2x2 pools, stride 2
VGG16_FEATURES = [layer for filters, convs in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
                  for layer in [("conv", filters, 3, 1, 1)] * convs + [("pool", 2, 2)]]


def _features(b: GraphBuilder, x: str, layers: list[tuple]) -> str:
    """torchvision's `features` Sequential: conv + ReLU take two indices, a max pool one."""
    index = 0
    for layer in layers:
        if layer[0] == "conv":
            _, filters, kernel, stride, pad = layer
            x = b.conv(x, filters, kernel, stride=stride, pad=pad, bias=True, name=f"features.{index}")
            x = b.add("Relu", [x], name=f"features.{index + 1}")
            index += 2
        else:
            _, kernel, stride = layer
            x = b.add("MaxPool", [x], {"kernel_shape": (kernel, kernel), "strides": (stride, stride),
                                           "pads": (0, 0, 0, 0)}, name=f"features.{index}")
            index += 1
    return x


def _linear(b: GraphBuilder, x: str, out_features: int, name: str) -> str:
    """torch.nn.Linear as ONNX Gemm: x (batch, in) times weight (out, in) transposed, plus bias."""
    w = b.param(f"{name}.w", (out_features, b.shape(x)[1]))
    return b.add("Gemm", [x, w, b.param(f"{name}.b", (out_features,))], {"transB": 1}, name=name)


def _mlp_classifier(b: GraphBuilder, x: str, dropout_first: bool) -> str:
    """Flatten, then Linear 4096, ReLU, Linear 4096, ReLU, Linear 1000, with a Dropout (p = 0.5) before each of the
    first two Linears (AlexNet: classifier.0 .. 6) or after each of the first two ReLUs (VGG: classifier.0 .. 6)."""
    y = b.add("Flatten", [x], {"axis": 1}, name="flatten")
    index = 0
    for _ in range(2):
        if dropout_first:
            y = b.add("Dropout", [y], {"ratio": 0.5}, name=f"classifier.{index}")
            index += 1
        y = b.add("Relu", [_linear(b, y, 4096, f"classifier.{index}")], name=f"classifier.{index + 1}")
        index += 2
        if not dropout_first:
            y = b.add("Dropout", [y], {"ratio": 0.5}, name=f"classifier.{index}")
            index += 1
    return _linear(b, y, NUM_CLASSES, f"classifier.{index}")


def alexnet(batch: int = 1, dtype: str = "int8") -> Graph:
    """AlexNet (torchvision's one-tower variant): convs of 64, 192, 384, 256, 256 filters, three FC layers;
    61.1 M parameters, 0.714 GMACs (0.656 G in the convs)."""
    b = GraphBuilder("alexnet", dtype)
    x = _features(b, b.input("input", (batch, *IMAGE)), ALEXNET_FEATURES)
    return b.build(_mlp_classifier(b, x, dropout_first=True))


def vgg16(batch: int = 1, dtype: str = "int8") -> Graph:
    """VGG-16 (torchvision, no batch norm): 13 3x3 convs in five blocks, three FC layers; 138.4 M parameters,
    15.47 GMACs (15.35 G in the convs)."""
    b = GraphBuilder("vgg16", dtype)
    x = _features(b, b.input("input", (batch, *IMAGE)), VGG16_FEATURES)
    return b.build(_mlp_classifier(b, x, dropout_first=False))
