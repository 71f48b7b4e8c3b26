"""Metric writing (JSONL, TensorBoard, progress bar) and the non-finite check."""

from rtc.metrics.finite import NonFiniteError, check_finite
from rtc.metrics.writer import MetricWriter, read_metrics

__all__ = ["MetricWriter", "NonFiniteError", "check_finite", "read_metrics"]
