"""Benchmarks: every number in BENCHMARKS.md comes from a command in this package."""
