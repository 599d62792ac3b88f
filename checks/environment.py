"""What the numbers depend on besides the code: the machine, its CPU features, torch's knobs and
settings, and the quirks whose probes show here.

``fingerprint()`` is the one record `byhand verify --json`, baselines and reports store;
``settings_on()`` names, for verify's header, every setting that changes numerics while it is on.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch

from checks import devices

# CPU features that change which kernel torch, oneDNN or MKL runs (x86, then Arm).
KERNEL_FEATURES = (
    "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_bf16", "amx_fp16", "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm",
)
# Environment variables torch and its libraries read at start-up that change kernels or numerics.
KNOB_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
                  "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "NVIDIA_TF32_OVERRIDE")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("CPU part") or platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The kernel-relevant features this CPU reports (/proc/cpuinfo, else torch's own checks)."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if not flags:
        # torch's AVX-512 check requires avx512f, bw, vl and dq together.
        checks = {("avx2",): "_is_avx2_supported", ("avx512f", "avx512bw", "avx512vl", "avx512dq"): "_is_avx512_supported",
                  ("avx512_bf16",): "_is_avx512_bf16_supported", ("avx512_vnni",): "_is_vnni_supported",
                  ("amx_tile",): "_is_amx_tile_supported", ("amx_fp16",): "_is_amx_fp16_supported"}
        flags = {name for names, fn in checks.items() if getattr(torch.cpu, fn, lambda: False)() for name in names}
    return [f for f in KERNEL_FEATURES if f in flags]


def read(get: Any) -> Any:
    """A torch setting, or what torch says instead of it: reading a legacy flag (allow_tf32,
    get_float32_matmul_precision) raises once the newer per-backend fp32_precision API was used."""
    try:
        return get()
    except RuntimeError:
        return "set through the newer fp32_precision API"


def float32_matmul_precision() -> str:
    """torch.get_float32_matmul_precision(), or, once the newer per-backend ``fp32_precision``
    settings are in use (the legacy getter raises then), those settings."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        parts = {"mkldnn matmul": lambda: torch.backends.mkldnn.matmul.fp32_precision, "cuda matmul": lambda: torch.backends.cuda.matmul.fp32_precision}
        return "fp32_precision " + ", ".join(f"{name}={read(get)}" for name, get in parts.items())


def flush_denormal() -> bool:
    """Whether float32 subnormals are flushed (torch.set_flush_denormal has no getter: probed)."""
    return bool((torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() == 0.0)


def knobs() -> dict[str, Any]:
    """torch's numerics settings and the start-up variables that were set."""
    mkldnn_matmul = getattr(torch.backends.mkldnn, "matmul", None)
    settings: dict[str, Any] = {
        "env": {name: os.environ[name] for name in KNOB_VARIABLES if name in os.environ},
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        "float32_matmul_precision": float32_matmul_precision(),
        "mkldnn_matmul_fp32_precision": read(lambda: getattr(mkldnn_matmul, "fp32_precision", None)),
        "flush_denormal": flush_denormal(),
    }
    if torch.cuda.is_available():
        matmul = torch.backends.cuda.matmul
        settings["cuda"] = {"matmul_allow_tf32": read(lambda: matmul.allow_tf32), "cudnn_allow_tf32": read(lambda: torch.backends.cudnn.allow_tf32),
                            "fp16_reduced_precision_reduction": read(lambda: matmul.allow_fp16_reduced_precision_reduction),
                            "bf16_reduced_precision_reduction": read(lambda: matmul.allow_bf16_reduced_precision_reduction)}
    return settings


def settings_on(k: dict[str, Any] | None = None) -> list[str]:
    """Each setting that changes numerics while it is on, as a phrase for verify's header."""
    k = knobs() if k is None else k
    on = [f"{name}={value}" for name, value in k["env"].items()]
    if not k["mkldnn_enabled"]:
        on.append("torch.backends.mkldnn.enabled = False (oneDNN off: native GEMMs)")
    if k["float32_matmul_precision"] != "highest":
        on.append(f"float32 matmul precision {k['float32_matmul_precision']!r} (float32 matmuls may run in bf16/TF32)")
    if k["mkldnn_matmul_fp32_precision"] not in (None, "none", "ieee"):
        on.append(f"torch.backends.mkldnn.matmul.fp32_precision = {k['mkldnn_matmul_fp32_precision']!r}")
    if k["flush_denormal"]:
        on.append("flush-denormal (torch.set_flush_denormal(True): float32/float64 subnormals become 0)")
    cuda = k.get("cuda", {})
    defaults = {"cudnn_allow_tf32", "fp16_reduced_precision_reduction", "bf16_reduced_precision_reduction"}  # on unless turned off
    on += [f"CUDA {name.replace('_', ' ')}" + (" (torch's default)" if name in defaults else "") for name, value in cuda.items() if value]
    return on


def fingerprint() -> dict[str, Any]:
    """The one environment record: versions, build, machine, CPU model and features, capability,
    threads, knobs and settings, the quirks that show here, np.longdouble, and the CUDA device."""
    from checks import departures

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sympy": sympy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "knobs": knobs(),
        "quirks": sorted(f"{d.id}@{device}" for d, device in departures.active_here(devices.available())),
        "probes": departures.answers(devices.available()),  # every probe's answer, per op, phase or dtype where it asks
        "longdouble_mantissa_bits": int(np.finfo(np.longdouble).nmant),
        "devices": devices.describe(),
        "cuda": torch.version.cuda,
        "build": torch.__config__.show(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["cuda_device"] = {"name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gib": round(props.total_memory / 2**30, 1),
                              "driver": _cuda_driver(), "tf32_matmul": read(lambda: torch.backends.cuda.matmul.allow_tf32)}
    return env


def _cuda_driver() -> str | None:
    try:
        return str(torch._C._cuda_getDriverVersion())
    except (AttributeError, RuntimeError):
        return None
