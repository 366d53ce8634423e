"""``make bench``: throughput and latency of the platform against the bare model limit and a naive baseline.

See ``bench/run.py`` for what is measured and how; results go to ``var/bench/results.{json,md}``.
"""
