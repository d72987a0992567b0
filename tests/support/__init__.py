"""Test doubles and helpers shared by the suites and the benchmarks."""
