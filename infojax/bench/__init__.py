"""Benchmarks of the curvature engine against a plain gradient and against peers."""
