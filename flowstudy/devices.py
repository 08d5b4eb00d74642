"""Where a run computes: its device, its share of the CPU cores, deterministic kernels."""

from __future__ import annotations

import os

import torch

from flowstudy.errors import ConfigError


def auto_device(cuda_devices: int, job_num: int = 0, parallel: int = 1) -> str:
    """CUDA when present; jobs of a sweep running in parallel each take GPU job_num % count."""
    if cuda_devices == 0:
        return "cpu"
    return f"cuda:{job_num % cuda_devices}" if parallel > 1 and cuda_devices > 1 else "cuda"


def resolve_device(name: str, job_num: int = 0, parallel: int = 1,
                   key: str = "train.device") -> torch.device:
    """``name`` (cpu, cuda, cuda:N or auto) as a device of this machine, or one line naming
    ``key``."""
    if name == "auto":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return torch.device(auto_device(gpus, job_num, parallel))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(key, name, "cpu or auto (this machine has no CUDA device)")
    try:
        device = torch.device(name)
    except RuntimeError as e:  # "Expected one of cpu, cuda, ... device type at start of ..."
        raise ConfigError(key, name, "auto, cpu, cuda or cuda:N") from e
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(key, name, "auto, cpu, cuda or cuda:N")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(key, name, f"cuda:0 to cuda:{torch.cuda.device_count() - 1} "
                          f"(this machine's CUDA devices), cuda, cpu or auto")
    return device


def device_label(device: torch.device) -> str:
    """What a run computes on, for the record of a wall-time budget: the GPU's name, or the
    CPU's model and the torch threads it uses."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo()
                  if line.startswith("model name")), "cpu")
    return f"cpu ({model}, {torch.get_num_threads()} threads)"


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read().splitlines()
    except OSError:
        return []


def thread_count(threads: int | None, cores: int, sharing: int) -> int:
    """``threads``, or ``cores`` shared among ``sharing`` processes (parallel sweep jobs, ranks
    on one machine), so they do not oversubscribe the cores; at least 1."""
    return threads or max(1, cores // sharing)


def usable_cores() -> int:
    """The cores this process may run on, capped by ``OMP_NUM_THREADS`` where the user set it
    (a limit given to the process, e.g. by a scheduler or a test harness, is a limit on torch's
    threads too; torch.set_num_threads would otherwise override it)."""
    cores = len(os.sched_getaffinity(0))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(limit)) if limit.isdigit() and int(limit) > 0 else cores


def set_threads(threads: int | None, sharing: int) -> None:
    torch.set_num_threads(thread_count(threads, usable_cores(), sharing))


def use_tf32(device: torch.device, on: bool) -> bool:
    """On CUDA, let fp32 matmuls and convolutions use TF32 tensor cores (10-bit mantissa
    products, fp32 accumulation; several times fp32 speed from Ampere on). Returns whether
    TF32 is in use: never on a CPU."""
    if device.type != "cuda":
        return False
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    return on


def use_deterministic(device: torch.device) -> None:
    """Deterministic kernels only; on CUDA cuBLAS needs a fixed workspace for that."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
