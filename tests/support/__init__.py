"""Test doubles shared by the e2e tests and the benchmarks."""
