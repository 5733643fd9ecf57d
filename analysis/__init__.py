"""servegauge's analysis: the result database -> metrics, percentiles, plots, reports.

A library first::

    import analysis
    frames = analysis.load("outputs/run/benchmark_data.db")   # pandas frames
    analysis.summary(frames, slo=analysis.parse_slo("ttft=200ms"))
    analysis.percentiles(frames)

It reads only the database, so any run can be re-reported later and
elsewhere.  `import analysis` is cheap: pandas is imported on first use of
a name below and matplotlib only when plotting.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load": "analysis.loader",
    "Frames": "analysis.frames",
    "ReportError": "analysis.loader",
    "summary": "analysis.metrics",
    "percentiles": "analysis.metrics",
    "nearest_rank": "analysis.metrics",
    "metric_samples": "analysis.metrics",
    "normalize_error": "analysis.metrics",
    "parse_slo": "analysis.metrics",
    "parse_goodput": "analysis.slo",
    "write_run_report": "analysis.report",
    "write_sweep_report": "analysis.report",
    "sweep_console_report": "analysis.sweep_table",
    "compare_runs": "analysis.compare",
    "plot_distribution": "analysis.plots",
    "plot_latency_distribution": "analysis.plots",
    "plot_ttft_distribution": "analysis.plots",
    "plot_tpot_distribution": "analysis.plots",
    "plot_itl_distribution": "analysis.plots",
    "plot_in_flight": "analysis.plots",
    "plot_output_rate": "analysis.plots",
    "plot_error_rate": "analysis.plots",
    "plot_ttft_vs_prompt": "analysis.plots",
    "plot_throughput_vs_load": "analysis.sweep_plots",
    "plot_ttft_vs_throughput": "analysis.sweep_plots",
    "plot_tpot_vs_throughput": "analysis.sweep_plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
