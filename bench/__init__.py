"""Benchmarks that print figures side by side with a peer; run each as ``python -m bench.NAME``."""
