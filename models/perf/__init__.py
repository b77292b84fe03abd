"""Measurement: closed-form FLOPs, clocks, and the two profilers behind `lina profile attention|pipeline`."""
