"""Benchmarks, one module per scenario (bench_<scenario>.py); run them with `python -m tests.benchmarks`.

Never collected by pytest (no test_ prefix); `make bench` runs them. Results: RESULTS.md.
"""
