"""Meters: a timeline of stage marks, torch memory peaks, and NVML readings on a sampler thread.

NVML is optional: without a GPU (CPU tests) or without nvidia-ml-py, `Nvml.open` returns None and
every NVML figure of a record is null.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import torch

MB = 2**20
# NVML field values are a union; valueType says which member holds the number.
FIELD_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal",
                       6: "usVal"}


class Clock:
    """Marks on one timeline in host seconds (perf_counter).

    On a GPU a mark is a CUDA event, so a mark taken while kernels are still queued lands when the
    GPU reaches it; `start` anchors the events to the host clock at a synchronised instant. On CPU
    work is synchronous and a mark is the host time itself.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._t0 = 0.0
        self._e0 = None

    def start(self) -> None:
        self.sync()
        self._t0 = time.perf_counter()
        if self.cuda:
            self._e0 = torch.cuda.Event(enable_timing=True)
            self._e0.record()

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, mark) -> float:
        """Host time of `mark`; call after `sync`."""
        if not self.cuda:
            return mark
        return self._t0 + self._e0.elapsed_time(mark) / 1000.0


class Sampler:
    """Calls `read()` every `interval_s` on a thread; keeps (host time, dict) samples.

    Used as a context manager; it also samples once on entry and once on exit, so even a very
    short window has readings at its ends.
    """

    def __init__(self, read: Callable[[], dict], interval_s: float = 0.02):
        self.read = read
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-sampler", daemon=True)

    def _sample(self) -> None:
        self.samples.append((time.perf_counter(), self.read()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "Sampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def values(self, key: str, windows: list[tuple[float, float]] | None = None) -> list[float]:
        """The readings of `key` (non-null), optionally only those inside any of `windows`."""
        return [
            s[key] for t, s in self.samples
            if s.get(key) is not None and (windows is None or any(a <= t <= b for a, b in windows))
        ]


def reset_peaks(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peaks_mb(device: torch.device) -> dict:
    """torch's peak allocated/reserved memory since the last reset (null on CPU: torch keeps no
    statistics there)."""
    if device.type != "cuda":
        return {"peak_allocated_mb": None, "peak_reserved_mb": None}
    return {"peak_allocated_mb": torch.cuda.max_memory_allocated(device) / MB,
            "peak_reserved_mb": torch.cuda.max_memory_reserved(device) / MB}


class Nvml:
    """One GPU through NVML: identity, memory used, utilization, power, SM clock, energy."""

    def __init__(self, pynvml, handle):
        self.nv = pynvml
        self.handle = handle
        self._instant_power = self._field_power() is not None

    @classmethod
    def open(cls, device: torch.device) -> "Nvml | None":
        """NVML for the CUDA device `device`, or None (CPU, or NVML not available)."""
        if device.type != "cuda":
            return None
        try:
            import pynvml
            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID("GPU-" + uuid)
            except pynvml.NVMLError:  # identify by index when UUIDs are hidden (containers)
                handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            return cls(pynvml, handle)
        except Exception as exc:  # noqa: BLE001 - any NVML failure just turns the meter off
            print(f"note: NVML unavailable ({exc}); NVML figures will be null")
            return None

    def _try(self, fn, *args):
        try:
            return fn(self.handle, *args)
        except self.nv.NVMLError:
            return None

    def _field_power(self) -> float | None:
        """Instantaneous board power (W); plain nvmlDeviceGetPowerUsage is a ~1 s average on
        recent GPUs, too slow for stages of a fraction of a second."""
        values = self._try(self.nv.nvmlDeviceGetFieldValues, [self.nv.NVML_FI_DEV_POWER_INSTANT])
        if not values or values[0].nvmlReturn != self.nv.NVML_SUCCESS:
            return None
        member = FIELD_VALUE_MEMBERS.get(values[0].valueType)
        return None if member is None else getattr(values[0].value, member) / 1000.0  # mW

    def power_w(self) -> float | None:
        if self._instant_power:
            return self._field_power()
        mw = self._try(self.nv.nvmlDeviceGetPowerUsage)
        return None if mw is None else mw / 1000.0

    def used_mb(self) -> float | None:
        """Device memory used, as nvidia-smi shows it (v2 API: driver-reserved memory excluded)."""
        info = self._try(self.nv.nvmlDeviceGetMemoryInfo, self.nv.nvmlMemory_v2)
        if info is None:
            info = self._try(self.nv.nvmlDeviceGetMemoryInfo)
        return None if info is None else info.used / MB

    def energy_j(self) -> float | None:
        """The board's energy counter (J since driver load), or None where unsupported."""
        mj = self._try(self.nv.nvmlDeviceGetTotalEnergyConsumption)
        return None if mj is None else mj / 1000.0

    def read(self) -> dict:
        util = self._try(self.nv.nvmlDeviceGetUtilizationRates)
        return {
            "util_pct": None if util is None else util.gpu,
            "power_w": self.power_w(),
            "sm_clock_mhz": self._try(self.nv.nvmlDeviceGetClockInfo, self.nv.NVML_CLOCK_SM),
            "used_mb": self.used_mb(),
        }

    def info(self) -> dict:
        """The `gpu` block of a record (catalog_id and compute_capability filled by the caller)."""
        nv = self.nv
        memory = self._try(nv.nvmlDeviceGetMemoryInfo)
        limit = self._try(nv.nvmlDeviceGetEnforcedPowerLimit)
        try:
            cuda = nv.nvmlSystemGetCudaDriverVersion_v2()
            cuda = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except nv.NVMLError:
            cuda = None
        uuid = self._try(nv.nvmlDeviceGetUUID)
        return {
            "name": _text(nv.nvmlDeviceGetName(self.handle)),
            "memory_mb": None if memory is None else memory.total / MB,
            "driver": _text(nv.nvmlSystemGetDriverVersion()),
            "cuda": cuda,
            "power_limit_w": None if limit is None else limit / 1000.0,
            "uuid": None if uuid is None else _text(uuid),
            "sm_clock_max_mhz": self._try(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_SM),
            "memory_clock_max_mhz": self._try(nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM),
        }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
