"""Latency measurement (host runtimes) and the benchmark report scripts."""
