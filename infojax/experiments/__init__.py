"""Experiments: one module per experiment, each exposing ``run(config, workdir) -> dict``."""
