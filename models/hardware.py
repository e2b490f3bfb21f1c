"""What this machine's processor runs fast: the one place that decides bfloat16 on the CPU.

Training (bfloat16 autocast) and the feature worker's torch backend both ask here. OpenVINO asks
its own CPU plugin (`OPTIMIZATION_CAPABILITIES`), since that runtime is the one that runs it.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def cpu_supports_bf16() -> bool:
    """oneDNN's answer: bfloat16 kernels on this CPU (AVX-512 or AMX), so autocast to bf16 pays off."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
