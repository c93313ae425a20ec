"""Benchmarks of guest-health-monitor on the local lab, head to head with
Masakari's introspective instance monitor.

Run on demand (``make bench`` or ``python -m bench.run_all``); they print
figures and are no part of the test suite. See bench/README.md.
"""
