"""Fused GPU kernels, one folder per op, each beside a plain-PyTorch reference (`<op>/reference.py`)."""
