"""Dynamic int8 quantisation of a PyTorch student: LSTM and Linear weights stored as int8,
activations quantised on the fly (`torch.ao.quantization.quantize_dynamic`); CPU only."""

from __future__ import annotations

import copy

import torch
from torch import nn

from xdistil.student.io import DistilledStudent


def quantize_student(student: DistilledStudent) -> DistilledStudent:
    """A copy of the loaded student whose LSTM and Linear layers run in dynamic int8 (the embedding stays fp32)."""
    quantized = copy.copy(student)
    model = copy.deepcopy(student.model).cpu().eval()
    quantized.model = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
    return quantized


def state_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's state as torch.save writes it (what an int8 PyTorch student takes on disk)."""
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes
