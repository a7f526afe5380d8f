"""The teacher at a lower precision for annotation: int8 (dynamic quantisation of its Linear layers,
CPU) or bfloat16. A copy: the fp32 teacher stays as it is for everything else."""

from __future__ import annotations

import copy

import torch
from torch import nn

from xdistil.errors import XDistilError


def at_precision(model: nn.Module, precision: str) -> nn.Module:
    """`model` itself for fp32; else a converted copy (int8 needs the CPU)."""
    if precision == "fp32":
        return model
    device = next(model.parameters()).device
    if precision == "int8":
        if device.type != "cpu":
            raise XDistilError("transfer.teacher_precision: int8 (dynamic quantisation) runs on the CPU; use bf16 on a GPU")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)
    if precision == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    raise XDistilError(f"transfer.teacher_precision: unknown '{precision}'; expected fp32, int8 or bf16")
