"""Benchmarks: ``python -m bench.relay`` compares the relay with stock aiortc."""
