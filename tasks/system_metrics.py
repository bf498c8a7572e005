"""CPU, memory and GPU memory while a model trains, sampled with psutil and torch (what MLflow's
system-metrics logger records, taken here because training runs in Flyte tasks, outside any MLflow
run, and the training tasks stay MLflow-free).

``track_in_mlflow`` logs the samples under MLflow's own names (``system/cpu_utilization_percentage``,
``system/system_memory_usage_megabytes``, ...) so they appear in the run's "System metrics" tab,
plus the training process's peak resident memory and mean CPU use.
"""

from __future__ import annotations

import threading
import time

import psutil

MAX_SAMPLES = 600  # past this the samples are thinned (every other one kept) and the interval doubles


class SystemSampler:
    """Context manager: samples system CPU %, system memory and this process's RSS every
    ``interval`` seconds on a daemon thread; ``summary()`` after the block."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.samples: list[dict] = []
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="system-sampler", daemon=True)
        self._peak_rss = 0

    def __enter__(self) -> "SystemSampler":
        self._started = time.time()
        self._cpu_start = self._process.cpu_times()
        psutil.cpu_percent(interval=None)  # primes the system-wide counter
        torch = _cuda_torch()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._finished = time.time()
        self._cpu_end = self._process.cpu_times()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
            if len(self.samples) > MAX_SAMPLES:
                self.samples = self.samples[::2]
                self.interval *= 2

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        self._peak_rss = max(self._peak_rss, rss)
        memory = psutil.virtual_memory()
        sample = {
            "time": time.time(),
            "cpu_utilization_percentage": psutil.cpu_percent(interval=None),
            "system_memory_usage_megabytes": (memory.total - memory.available) / 2**20,
            "system_memory_usage_percentage": memory.percent,
            "process_rss_megabytes": rss / 2**20,
        }
        torch = _cuda_torch()
        if torch is not None:
            sample["gpu_0_memory_allocated_megabytes"] = torch.cuda.memory_allocated() / 2**20
            try:  # needs nvidia-ml-py; without it there is no utilisation figure, and that is fine
                sample["gpu_0_utilization_percentage"] = float(torch.cuda.utilization())
            except Exception:  # noqa: BLE001
                pass
        self.samples.append(sample)

    def summary(self) -> dict:
        """Peak RSS of this process (MB), its mean CPU use over the block (100 = one core busy),
        the machine's core count, GPU peak memory when CUDA was used, and the samples."""
        wall = max(self._finished - self._started, 1e-9)
        cpu = (self._cpu_end.user - self._cpu_start.user) + (self._cpu_end.system - self._cpu_start.system)
        summary = {
            "process_peak_rss_megabytes": self._peak_rss / 2**20,
            "process_cpu_utilization_percentage": 100.0 * cpu / wall,
            "cpu_count": psutil.cpu_count() or 0,
            "samples": self.samples,
        }
        gpu = _gpu_peak_megabytes()
        if gpu is not None:
            summary["gpu_0_peak_memory_allocated_megabytes"] = gpu
        return summary


def _cuda_torch():
    """torch, if this process has already initialised CUDA (never imports torch itself)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch


def _gpu_peak_megabytes() -> float | None:
    torch = _cuda_torch()
    return None if torch is None else torch.cuda.max_memory_allocated() / 2**20
