"""Backend registry and selection.

``backend="auto"`` takes the first backend with no reasons not to run, in an order for the model's
device: on the CPU cpu, reference; on a CUDA device the order ``gpu_timings.rank`` gives (the backends
ranked by the measurements in data/gpu_backend_timings.json for that card and dtype, else triton, cuda,
reference). ``SQBERT_FAST_BACKEND`` replaces "auto" with an explicit choice. An explicit backend that
cannot run raises an error listing why — never a silent fallback. ``choose`` says why auto took what it
took.
"""

from __future__ import annotations

import os

import torch

from .base import Backend, Encoded, Runner, encoder_weights  # noqa: F401
from .cpu import CpuBackend
from .reference import ReferenceBackend

_REGISTRY: dict[str, Backend] = {"reference": ReferenceBackend(), "cpu": CpuBackend()}
_PRIORITY = {"cpu": ["cpu", "reference"]}  # CUDA devices: gpu_timings.rank


def register(backend: Backend) -> None:
    _REGISTRY[backend.name] = backend


def _load_optional() -> None:
    for mod in ("triton", "cuda"):
        if mod in _REGISTRY:
            continue
        try:
            module = __import__(f"{__name__}.{mod}", fromlist=["BACKEND"])
        except ImportError:
            continue
        register(module.BACKEND)


def all_backends() -> dict[str, Backend]:
    _load_optional()
    return dict(_REGISTRY)


def reasons(device="cpu", dtype=torch.float32) -> dict[str, list[str]]:
    """backend name -> why it cannot run on (device, dtype); empty list = it can."""
    device = torch.device(device)
    return {name: b.reasons(device, dtype) for name, b in all_backends().items()}


def available_backends(device="cpu", dtype=torch.float32) -> list[str]:
    return [name for name, r in reasons(device, dtype).items() if not r]


def choose(device, dtype) -> tuple[str, str]:
    """(backend auto takes on device / dtype, why, as text); ("", why) when none can run."""
    device = torch.device(device)
    why = reasons(device, dtype)
    if device.type == "cuda":
        from .. import gpu_timings  # not at import: `python -m sqbert_fast.gpu_timings` imports this package first

        name, capability = gpu_timings.device_identity(device)
        c = gpu_timings.rank(name, capability, dtype, why)
        return c.name, c.reason
    order = _PRIORITY.get(device.type, ["reference"])
    for n in order:
        if n in why and not why[n]:
            return n, f"{n}: first of {', '.join(order)} that can run on {device.type}"
    return "", "no backend can run"


def select_with_reason(name: str, device, dtype) -> tuple[Backend, str]:
    """The backend `name` ("auto" or a backend's name) resolves to on device / dtype, and why."""
    device = torch.device(device)
    backends = all_backends()
    how = "asked for"
    if name == "auto":
        name = os.environ.get("SQBERT_FAST_BACKEND", "auto") or "auto"
        how = "SQBERT_FAST_BACKEND"
    if name == "auto":
        # An override naming what this machine lacks (SQBERT_FAST_FORCE_CPU_ISA=avx512 on an AVX2 CPU) is an
        # error under auto too: falling back to another backend would hide it.
        wrong = [f"{n}: {why}" for n, b in backends.items() for why in b.misconfigured(device)]
        if wrong:
            raise RuntimeError(f"backend 'auto' on {device}: {'; '.join(wrong)}")
        chosen, reason = choose(device, dtype)
        if chosen:
            return backends[chosen], reason
        raise RuntimeError(f"no backend can run on {device} / {dtype}: " +
                           "; ".join(f"{n}: {', '.join(b.reasons(device, dtype))}" for n, b in backends.items()))
    if name not in backends:
        known = sorted(set(backends) | {"triton", "cuda"})
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(known)}, auto)")
    why = backends[name].reasons(device, dtype)
    if why:
        raise RuntimeError(f"backend {name!r} cannot run on {device} / {dtype}: {'; '.join(why)}")
    return backends[name], f"{name}: {how}"


def select(name: str, device, dtype) -> Backend:
    return select_with_reason(name, device, dtype)[0]
