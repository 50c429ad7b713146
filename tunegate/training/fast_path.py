"""The GPU fast path, switched on by the hardware: padding-free packing, fused kernels, bf16, torch.compile.

Each piece is decided once per run from the recipe and what the machine has, and every piece that stays off says
why in the run's log (`fast path: packing off (CPU: ...)`), so a slow run on a GPU box explains itself. On CPU
everything is off and training is exactly what it was before the fast path existed.

    >>> plan = fast_path_for(TrainConfig(), cuda=False, bf16_supported=False, liger_installed=False)
    >>> plan.packing, plan.kernels, plan.compile, plan.precision
    (False, False, False, 'fp32')
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from tunegate.config.train import TrainConfig


@dataclass(frozen=True)
class FastPath:
    """What one training run uses, and why each piece is on or off."""

    packing: bool
    kernels: bool
    compile: bool
    precision: str  # fp32 | bf16 | fp16
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "fast path: " + "; ".join(self.reasons)


def fast_path_for(recipe: TrainConfig, cuda: bool, bf16_supported: bool, liger_installed: bool) -> FastPath:
    """The pieces `recipe` asks for that this hardware supports."""
    reasons: list[str] = []
    if recipe.packing == "off":
        packing = False
        reasons.append("packing off (train.packing: off)")
    elif recipe.packing == "on" or cuda:
        packing = True
        reasons.append("packing on" + ("" if cuda else " (train.packing: on; CPU attends through a block mask)"))
    else:
        packing = False
        reasons.append("packing off (CPU: a block mask over the packed row costs more than the padding it saves)")
    if recipe.kernels == "none":
        kernels = False
        reasons.append("kernels off (train.kernels: none)")
    elif not cuda:
        kernels = False
        reasons.append("kernels off (CPU: Liger's kernels are Triton, CUDA only)")
    elif not liger_installed:
        kernels = False
        reasons.append("kernels off (liger-kernel is not installed: pip install liger-kernel)")
    else:
        kernels = True
        reasons.append("kernels on (Liger: RMSNorm, RoPE, SwiGLU, fused linear cross-entropy)")
    compiled = recipe.compile and cuda
    if recipe.compile:
        reasons.append("compile on" if compiled else "compile off (CPU: train.compile applies on CUDA only)")
    precision = resolved_precision(recipe.precision, cuda, bf16_supported)
    reasons.append(
        f"precision {precision}" + (" (CPU: autocast gains little)" if recipe.precision == "auto" and not cuda else "")
    )
    return FastPath(packing=packing, kernels=kernels, compile=compiled, precision=precision, reasons=reasons)


def resolved_precision(precision: str, cuda: bool, bf16_supported: bool) -> str:
    """`auto`: bf16 where the GPU supports it, fp16 on other GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if not cuda:
        return "fp32"
    return "bf16" if bf16_supported else "fp16"


def fast_path(recipe: TrainConfig) -> FastPath:
    """The fast path for `recipe` on this machine."""
    import torch

    cuda = torch.cuda.is_available()
    return fast_path_for(
        recipe,
        cuda=cuda,
        bf16_supported=cuda and torch.cuda.is_bf16_supported(),
        liger_installed=importlib.util.find_spec("liger_kernel") is not None,
    )
