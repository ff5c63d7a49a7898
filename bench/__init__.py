"""Benchmarks (not tests): each prints its method, machine and numbers, with ratios to a baseline of the same run."""
