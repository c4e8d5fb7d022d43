"""Test set-up: 8 virtual CPU devices, strict rank promotion, float32 by default.

Tests that need float64 use the ``x64`` fixture, which turns it on for that test only.

The suite shares one persistent JAX compilation cache, a fresh temporary folder per pytest run
(removed at exit), with every process it starts: xdist workers and the multi-process and script
tests' subprocesses inherit ``JAX_COMPILATION_CACHE_DIR``. A script that a test runs twice (a
killed run and its resume) or in several processes then compiles its programs once; a module that
compiles what an earlier one did, after `_release_compiled_programs` dropped the in-memory caches,
reads it back. The cache holds executables, so results are the same bits with or without it. A
folder set by the caller is used as it is and kept.
"""

import atexit
import gc
import os
import shutil
import tempfile

# Must be set before jax initialises its backends.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache_dir = tempfile.mkdtemp(prefix="infojax-test-jax-cache-")
  atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
# Cache every program: most of the suite's compilations take well under JAX's default 1 s floor.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
  """Enables float64 for the duration of one test."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's compilation caches after each test module.

  One pytest process runs the whole suite; without this, every compiled program of every module
  stays alive, and the process's memory maps grew past the kernel's default limit
  (``vm.max_map_count`` = 65,530), at which point XLA:CPU crashed while compiling (a segfault in a
  later module's sharded test).
  """
  yield
  jax.clear_caches()
  gc.collect()
