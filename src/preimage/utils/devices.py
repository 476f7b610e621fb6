"""Compute dtypes by name, and "auto": bfloat16 only where the device computes it in hardware.

Both the prior's UNet (`models.prior.dtype`) and the guided sampler's gradient (`gradient_dtype`) take these
names. The sampler's autocast covers only the gradient that steers it: every acceptance test runs in the
models' own precision.
"""

from __future__ import annotations

import platform
import random
import warnings
from pathlib import Path

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
AUTO_DTYPE = "auto"


def check_dtype_name(field: str, name: object) -> str:
    """`name` if it is "auto" or a key of DTYPES; otherwise an error naming `field`."""
    if name != AUTO_DTYPE and name not in DTYPES:
        raise ValueError(f"{field}: {name!r}; expected {AUTO_DTYPE!r} or one of {list(DTYPES)}")
    return name


def resolve_dtype(field: str, name: str, device: str | torch.device) -> torch.dtype:
    """The torch dtype `name` stands for on `device`; "auto" is bfloat16 where it is native, else float32. An
    explicit bfloat16 where it is emulated is kept, with a warning naming `field`: it runs many times slower."""
    if check_dtype_name(field, name) == AUTO_DTYPE:
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    if name == "bfloat16" and not native_bfloat16(device):
        warnings.warn(f"{field}: bfloat16 is emulated on this {torch.device(device).type} (no AVX512-BF16 or AMX), many "
                      "times slower than float32; 'auto' picks bfloat16 only where it is native", stacklevel=2)
    return DTYPES[name]


def native_bfloat16(device: str | torch.device) -> bool:
    """Whether `device` has bfloat16 arithmetic in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX. Elsewhere bfloat16 is emulated and slower than float32: the world's UNet took 2.4x as
    long per step under bfloat16 autocast on an AVX-512 Xeon without either."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # torch.cpu's capability probes are private but have been there since torch 2.1
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """Autocast to `dtype` on `device`'s type; a no-op context for float32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of `module`'s first parameter. Samplers ask a prior for its device at every step; diffusers'
    `ModelMixin.device` walks every submodule for offloading hooks first (about 0.5 ms a call on a CPU)."""
    return next(module.parameters()).device


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype of `module`'s first parameter (see `module_device`)."""
    return next(module.parameters()).dtype


def device_name(device: str | torch.device) -> str:
    """The GPU's or CPU's model name, for benchmark headers: figures depend on it (bf16 arithmetic, caches)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, so the same rule trains on a GPU node or a laptop."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for, but this machine has no visible CUDA device; use 'auto' (CUDA "
                         "where there is one) or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG a training loop touches and return a generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Model outputs for every input, batched, in eval mode, on the CPU."""
    model.to(device).eval()
    return torch.cat([model(batch.to(device)).cpu() for batch in inputs.split(batch_size)])
