"""Rows of the Fisher benchmark, the console line of each, and ``RESULTS.md`` / ``RESULTS.json``.

``RESULTS.md`` may also hold sections that other benchmarks write between HTML-comment markers
(`PRESERVED_SECTIONS`, e.g. ``scripts/bench_primitives.py``'s ``<!-- primitives:begin -->`` ...
``<!-- primitives:end -->``); `write_results` carries them over, verbatim, to the end of the file it
rewrites. `marked_section` and `replace_section` read and write such a section.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

# Issue 3's targets: time ratio to a plain JAX gradient on the same batch, infojax's default method.
TIME_TARGETS = (
    ("empirical", "mlp", 1.05, "kfac-jax 0.99x, BackPACK 1.66x, jax vmap(grad) 118x"),
    ("empirical", "cnn", 1.25, "kfac-jax 1.37x, jax vmap(grad) 1.65x, BackPACK 7.5x"),
    ("true", "mlp", 3.0, "BackPACK 4.7x, kfac-jax 5.4x, NNGeometry 7.9x"),
    ("true", "cnn", 7.0, "kfac-jax 9.9x, NNGeometry 17.5x, BackPACK 42x"),
    ("mc", "mlp", 1.1, "kfac-jax 1.03x"),
    ("mc", "cnn", 1.4, "kfac-jax 1.89x"),
)
# Peak memory above the import baseline, as a multiple of a gradient's (both reference workloads).
MEMORY_TARGET = 1.5
MEMORY_TARGET_QUANTITIES = ("empirical", "true", "mc")
ERROR_TARGET = 1e-5

# Sections of RESULTS.md written by other scripts, kept when this one rewrites the file.
PRIMITIVES_BEGIN = "<!-- primitives:begin -->"
PRIMITIVES_END = "<!-- primitives:end -->"
DYNAMICS_BEGIN = "<!-- dynamics:begin -->"
DYNAMICS_END = "<!-- dynamics:end -->"
BOTTLENECK_BEGIN = "<!-- bottleneck:begin -->"
BOTTLENECK_END = "<!-- bottleneck:end -->"
PRESERVED_SECTIONS = ((PRIMITIVES_BEGIN, PRIMITIVES_END), (DYNAMICS_BEGIN, DYNAMICS_END),
                      (BOTTLENECK_BEGIN, BOTTLENECK_END))


@dataclasses.dataclass
class Row:
  """One measured row (times in ms, memory in MiB)."""
  workload: str
  quantity: str
  implementation: str
  framework: str
  median_ms: float
  calls: int
  ratio: Optional[float] = None             # median / median of the framework's gradient
  compile_s: Optional[float] = None
  xla_memory_mb: Optional[float] = None
  run_peak_mb: Optional[float] = None
  run_peak_ratio: Optional[float] = None
  process_peak_mb: Optional[float] = None
  process_peak_ratio: Optional[float] = None
  rel_err: Optional[float] = None
  reference: str = ""
  default_method: bool = False              # infojax's method="auto" choice
  note: str = ""


def _section_span(text: str, begin: str, end: str) -> Optional[Tuple[int, int]]:
  """``(start, stop)`` of the first ``begin ... end`` block of ``text`` (markers included)."""
  start = text.find(begin)
  if start < 0:
    return None
  stop = text.find(end, start + len(begin))
  if stop < 0:
    return None
  return start, stop + len(end)


def marked_section(text: str, begin: str = PRIMITIVES_BEGIN, end: str = PRIMITIVES_END
                   ) -> Optional[str]:
  """The ``begin ... end`` block of ``text``, markers included; None if it has none (or if the
  end marker is missing)."""
  span = _section_span(text, begin, end)
  return None if span is None else text[span[0]:span[1]]


def replace_section(text: str, section: str, begin: str = PRIMITIVES_BEGIN,
                    end: str = PRIMITIVES_END) -> str:
  """``text`` with its ``begin ... end`` block replaced by ``section`` (which must start with
  ``begin`` and end with ``end``), or with ``section`` appended after a blank line if it has none.

  Raises:
    ValueError: if ``section`` is not delimited by the markers, or ``text`` has a ``begin``
      marker without an ``end`` marker after it (replacing would lose what follows it).
  """
  if not (section.startswith(begin) and section.rstrip().endswith(end)):
    raise ValueError(f"section must start with {begin!r} and end with {end!r}.")
  section = section.rstrip()
  span = _section_span(text, begin, end)
  if span is None:
    if begin in text:
      raise ValueError(f"the text has {begin!r} but no {end!r} after it; fix the file by hand.")
    head = text.rstrip()
    return (head + "\n\n" if head else "") + section + "\n"
  return text[:span[0]] + section + text[span[1]:]


def write_section(path: str, section: str, begin: str, end: str) -> None:
  """Puts ``section`` into the markdown file at ``path`` with `replace_section` (the file is
  created if missing; the rest of it is kept)."""
  text = ""
  if os.path.exists(path):
    with open(path) as f:
      text = f.read()
  with open(path, "w") as f:
    f.write(replace_section(text, section, begin, end))


def _preserved_sections(path: str) -> List[str]:
  """The marked sections of the file at ``path`` that `write_results` keeps (in file order)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    text = f.read()
  found = []
  for begin, end in PRESERVED_SECTIONS:
    span = _section_span(text, begin, end)
    if span is not None:
      found.append((span[0], text[span[0]:span[1]]))
  return [section for _, section in sorted(found)]


def _fmt(value, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def format_row(row: Row) -> str:
  """The console line of a row."""
  return (f"{row.workload:<14} {row.quantity:<9} {row.implementation:<28} "
          f"{row.median_ms:>9.2f} ms x{_fmt(row.ratio, '.2f'):>7}  "
          f"compile {_fmt(row.compile_s, '.2f'):>5} s  "
          f"run-peak {_fmt(row.run_peak_mb, '.1f'):>7} MB"
          f" (x{_fmt(row.run_peak_ratio, '.2f')})  process-peak "
          f"{_fmt(row.process_peak_mb, '.1f')} MB (x{_fmt(row.process_peak_ratio, '.2f')})  "
          f"err {_fmt(row.rel_err, '.1e')}" + (f"  [{row.note}]" if row.note else ""))


def _find(rows: Sequence[Row], workload: str, quantity: str, *, default: bool = True
          ) -> Optional[Row]:
  for row in rows:
    if (row.workload == workload and row.quantity == quantity
        and row.implementation.startswith("infojax_") and row.default_method == default):
      return row
  return None


def _best_peer(rows: Sequence[Row], workload: str, quantity: str) -> str:
  peers = [r for r in rows if r.workload == workload and r.quantity == quantity
           and not r.implementation.startswith("infojax_") and r.ratio is not None
           and (r.rel_err is None or r.rel_err < 1e-3)]
  if not peers:
    return "-"
  best = min(peers, key=lambda r: r.ratio)
  return f"{best.implementation} {best.ratio:.2f}x"


def targets(rows: Sequence[Row]) -> List[dict]:
  """Each target of issue 3 with the measured figure and whether it is met."""
  out = []
  for quantity, workload, target, peers_then in TIME_TARGETS:
    row = _find(rows, workload, quantity)
    if row is None or row.ratio is None:
      continue
    met = row.ratio <= target and (row.rel_err is None or row.rel_err <= ERROR_TARGET)
    out.append({"kind": "time", "quantity": quantity, "workload": workload,
                "target": f"<= {target:g}x", "measured": f"{row.ratio:.2f}x",
                "implementation": row.implementation,
                "rel_err": row.rel_err, "met": met, "best_peer_this_run":
                _best_peer(rows, workload, quantity), "best_peer_in_issue": peers_then})
  for workload in ("mlp", "cnn"):
    for quantity in MEMORY_TARGET_QUANTITIES:
      row = _find(rows, workload, quantity)
      if row is None:
        continue
      ratio = row.process_peak_ratio
      basis = "process peak above import baseline"
      if ratio is None:
        ratio, basis = row.run_peak_ratio, "per-call peak"
      if ratio is None:
        continue
      plain = [r for r in rows if r.workload == workload and r.quantity == quantity
               and r.implementation == "jax_vmap_grad"]
      plain_ratio = plain[0].process_peak_ratio if plain else None
      out.append({"kind": "memory", "quantity": quantity, "workload": workload,
                  "target": f"<= {MEMORY_TARGET:g}x G", "measured": f"{ratio:.2f}x G ({basis})",
                  "implementation": row.implementation, "met": ratio <= MEMORY_TARGET,
                  "per_call_ratio": row.run_peak_ratio,
                  "best_peer_this_run": "-" if plain_ratio is None else
                  f"jax_vmap_grad {plain_ratio:.2f}x G",
                  "best_peer_in_issue": "jax vmap(grad) 12x G on mlp"})
  return out


def _table(rows: Sequence[Row]) -> List[str]:
  lines = ["| workload | quantity | implementation | median ms | calls | x G | compile s | "
           "per-call peak MB | x G | process peak MB | x G | XLA MB | rel err | reference | note |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    name = r.implementation + (" (auto)" if r.default_method else "")
    lines.append(
        f"| {r.workload} | {r.quantity} | {name} | {r.median_ms:.2f} | {r.calls} | "
        f"{_fmt(r.ratio, '.2f')} | {_fmt(r.compile_s, '.2f')} | {_fmt(r.run_peak_mb, '.1f')} | "
        f"{_fmt(r.run_peak_ratio, '.2f')} | {_fmt(r.process_peak_mb, '.1f')} | "
        f"{_fmt(r.process_peak_ratio, '.2f')} | {_fmt(r.xla_memory_mb, '.1f')} | "
        f"{_fmt(r.rel_err, '.1e')} | {r.reference or '-'} | {r.note} |")
  return lines


def provenance(machine: Dict, versions: Dict, command: str) -> List[str]:
  """The date, command, machine and versions lines that head every results file."""
  device = f"{machine['devices']}" + (f", {machine['device_memory_gib']} GiB"
                                      if "device_memory_gib" in machine else "")
  return [
      f"- Date: {machine['date']}",
      f"- Command: `{command}`",
      f"- Machine: {machine['cpu']}, {machine['cores']} cores; JAX backend {machine['backend']} "
      f"({device}); Python {machine['python']}",
      "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
  ]


def write_results(path: str, rows: Sequence[Row], *, command: str, machine: Dict,
                  versions: Dict, workloads: Dict[str, str], notes: Sequence[str],
                  memory_method: Optional[str]) -> None:
  """Writes ``path`` (markdown) and the same content as JSON beside it (``.json``).

  The `PRESERVED_SECTIONS` of an existing ``path`` are carried over to the end of the new file.
  """
  target_rows = targets(rows)
  preserved = _preserved_sections(path)
  lines = [
      "# Fisher benchmark results",
      "",
      "Written by `scripts/bench_fisher.py` (do not edit by hand).",
      "",
      *provenance(machine, versions, command),
      "",
      "## Method",
      "",
      "Median wall time of interleaved repetitions after compilation and one warm-up call "
      "(`calls`: timed calls; slow rows stop after their time budget). `x G`: ratio to the plain "
      "batch gradient of the same framework, measured in the same process and run (JAX rows, "
      "kfac-jax included: `jax.grad` of the mean loss; torch rows: torch autograd). `compile s`: "
      "lowering and XLA compilation (JAX rows). `per-call peak`: "
      + (memory_method or "not measured on this platform") + ". `process peak`: peak memory of a "
      "fresh process computing only that row, above its import baseline (parameters, data, "
      "compilation and the call; RSS high-water mark on CPU, device `peak_bytes_in_use` on GPU). "
      "`XLA MB`: temporaries + outputs that XLA plans for the compiled program "
      "(`memory_analysis()`, computed, not measured). `rel err`: `||a - b|| / ||b||` over all "
      "entries against the float64 reference named in the `reference` column (see "
      "`infojax/bench/jax_rows.py`). Quantities: G gradient of the mean loss; empirical, true "
      "(exact expectation over the model's labels) and mc (one sampled label per example) Fisher "
      "diagonals, mean over examples; trace of the empirical Fisher; norms: per-example gradient "
      "norms. `(auto)` marks the strategy `method=\"auto\"` picks.",
      "",
      "## Workloads",
      "",
  ]
  lines += [f"- `{name}`: {description}" for name, description in workloads.items()]
  lines += ["", "## Results", ""] + _table(rows)
  lines += ["", "## Targets (issue 3)", "",
            "| target | workload | quantity | goal | measured | met | best peer this run | "
            "best peer in the issue |", "|---|---|---|---|---|---|---|---|"]
  for t in target_rows:
    error = "" if t.get("rel_err") is None else f", err {t['rel_err']:.1e}"
    lines.append(f"| {t['kind']} | {t['workload']} | {t['quantity']} | {t['target']} | "
                 f"{t['measured']}{error} | {'met' if t['met'] else 'MISSED'} | "
                 f"{t.get('best_peer_this_run', '-')} | {t.get('best_peer_in_issue', '-')} |")
  if any(not t["met"] for t in target_rows):
    lines += ["", "Why each missed target is missed, and what would close it: "
              "[ANALYSIS.md](ANALYSIS.md) (written by hand after the run)."]
  if notes:
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
  for section in preserved:
    lines += [""] + section.split("\n")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.splitext(path)[0] + ".json", "w") as f:
    json.dump({"machine": machine, "versions": versions, "command": command,
               "workloads": workloads, "notes": list(notes), "targets": target_rows,
               "rows": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
