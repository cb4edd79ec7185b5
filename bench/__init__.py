"""Benchmarks: every figure is a ratio against a baseline measured in the same run.

`make bench` (or `python -m bench`) writes bench/results.md, bench/results.json and
bench/results.png. `python -m bench --smoke --out DIR` is the few-requests version the tests run.
"""
