"""Sampling: the set-by-set AR sampler, the flow-matching Euler scheduler and CUDA-graph replay of the head loop."""
