"""Benchmarks of the curvature engine against a plain gradient and against peers.

Modules: ``fisher`` (the benchmark of issue 3: ``run(Config) -> Result``, ``write``), ``workloads``,
``jax_rows`` (JAX rows and float64 references), ``torch_peers``, ``kfac_peers``, ``measure`` (timing
and memory), ``memory_probe`` (fresh-process peak memory), ``report`` (RESULTS.md / RESULTS.json),
``scaling`` (throughput and exactness against the device count: SCALING.md).
Nothing is imported here, so that ``python -m infojax.bench.memory_probe`` starts light.
"""
