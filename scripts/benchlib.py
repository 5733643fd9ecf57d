"""Pieces the benchmark scripts share: measuring a process tree."""
from __future__ import annotations

import threading


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants; keeps
    the peak and, optionally, every sample as (seconds since start, MB)."""

    def __init__(self, pid: int, interval_s: float = 0.05, keep: bool = False):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.keep = keep
        self.samples: list[tuple[float, float]] = []
        self.peak_mb = 0.0
        self.done = threading.Event()

    def run(self):
        import time

        import psutil

        t0 = time.monotonic()
        while not self.done.is_set():
            try:
                total = 0
                for p in [self.root] + self.root.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                mb = total / 2**20
                self.peak_mb = max(self.peak_mb, mb)
                if self.keep:
                    self.samples.append((time.monotonic() - t0, mb))
            except psutil.Error:
                pass
            self.done.wait(self.interval_s)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
