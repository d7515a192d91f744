"""oneDNN's fused inference kernels on the CPU: the calls inductor generates, taken in eager mode.

Every module that has them (MiT's Attention and MixFFN, the fusion modules' ConvModule) carries a class flag
`fused_kernels` and takes them only in an eager fp32 CPU forward without autograd (`runs_fused`): training, other
devices and dtypes, ONNX export, tracing and torch.compile see the original's operators. The same flag and rule keep
MiT's stage outputs in the channels-last layout those kernels read (MixVisionTransformer). Both compute the same
function up to float rounding (tests/models/test_models.py); benchmarks/model_speed.py compares them in one run
(variant `unfolded` has them off): docs/speed.md.
"""
from __future__ import annotations

import torch
from torch import nn


def eager_cpu_inference(x: torch.Tensor) -> bool:
    """An eager fp32 CPU forward without autograd: no graph capture (ONNX export, torch.compile, tracing), which
    must see standard operators; oneDNN's fused kernels present."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling() and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def runs_fused(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether `module` (with a `fused_kernels` flag) takes its fused oneDNN kernels for input `x`."""
    return module.fused_kernels and not module.training and eager_cpu_inference(x)


def set_fused_kernels(module: nn.Module, enabled: bool) -> None:
    """Turns the fused oneDNN inference kernels of every module under `module` that has them on or off (on by
    default)."""
    for child in module.modules():
        if hasattr(child, "fused_kernels"):
            child.fused_kernels = enabled


def linear(layer: nn.Linear, x: torch.Tensor, fused: bool, residual: torch.Tensor | None = None) -> torch.Tensor:
    """`layer(x)`, plus `residual` if given. `fused`: one oneDNN call with the bias and the addition inside:
    torch's CPU linear adds the bias and the residual in separate passes over the output."""
    if fused:
        if residual is None:
            return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
    out = layer(x)
    return out if residual is None else residual + out


def fold_batch_norm(weight: torch.Tensor, bias: torch.Tensor | None,
                    norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of `norm(conv(x))` as one convolution, with `norm` at its running statistics (eval):
    each output channel scaled by gamma / sqrt(var + eps), the bias shifted to beta - mean * that scale."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    folded_bias = shift if bias is None else bias * scale + shift
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), folded_bias


def conv_pointwise(conv: nn.Conv2d, x: torch.Tensor, activation: str,
                   norm: nn.BatchNorm2d | None = None) -> torch.Tensor:
    """activation(norm(conv(x))) (`norm` None: activation(conv(x))) as one oneDNN call, the norm folded into the
    convolution: the output is written once instead of two or three times. `activation`: "relu", or "gelu"
    (exact, erf: torch's default, as MiT's MixFFN uses)."""
    if activation not in ("relu", "gelu"):
        raise ValueError(f"activation must be relu or gelu, got {activation!r}")
    weight, bias = (conv.weight, conv.bias) if norm is None else fold_batch_norm(conv.weight, conv.bias, norm)
    scalars, algorithm = ([None], "none") if activation == "gelu" else ([], "")
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, conv.padding, conv.stride, conv.dilation,
                                                   conv.groups, activation, scalars, algorithm)
