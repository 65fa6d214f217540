"""Benchmarks (``make bench``): figures and ratios against the comparison each issue names."""
