"""Benchmarks of the enrollment pipeline on real parts (``python -m bench.enroll``). Not tests."""
