"""Benchmarks behind ``make bench``: each compares against the naive baseline in the same run."""
