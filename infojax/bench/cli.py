"""Argument parsing shared by the benchmark scripts."""


def csv(text: str) -> tuple:
  """``"a,b,"`` -> ``("a", "b")``."""
  return tuple(item for item in text.split(",") if item)


def ints(text: str) -> tuple:
  """``"1,2,4"`` -> ``(1, 2, 4)``."""
  return tuple(int(item) for item in csv(text))
