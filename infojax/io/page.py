"""A run's page: ``index.html`` in its workdir, to read a run in a browser.

The page shows what the workdir holds: the summary (``summary.txt``), every PNG plot (linked by
relative path, so the folder can be copied or served as it is), the config (``config.json``) and
the size of the metrics log (``metrics.jsonl``: its record count and last record). It is rebuilt
from the files each time, so rewriting it after a resumed run is always right. Written by process 0
only, atomically (a temporary file renamed into place).
"""

import html
import json
import os
from typing import Optional

from infojax.io.metrics import is_primary_process
from infojax.io.metrics import read_metrics

PAGE_FILE = "index.html"
_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
          "pre{background:#f4f4f4;padding:1em;overflow-x:auto;white-space:pre-wrap}"
          "img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}")


def _read_text(path: str) -> Optional[str]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return f.read()


def _metrics_section(path: str) -> list:
  if not os.path.exists(path):
    return []
  records = read_metrics(path)
  parts = [f"<h2>Metrics</h2><p><code>metrics.jsonl</code>: {len(records)} records.</p>"]
  if records:
    last = json.dumps(records[-1], indent=1, sort_keys=True)
    parts.append(f"<p>The last record:</p><pre>{html.escape(last, quote=False)}</pre>")
  return parts


def write_run_page(workdir: str, *, title: Optional[str] = None) -> Optional[str]:
  """Writes ``workdir/index.html`` from the run's files (process 0 only).

  Args:
    workdir: the run's output folder.
    title: the page title; default the folder's name.

  Returns:
    The page's path on process 0, else ``None``.

  Raises:
    FileNotFoundError: if ``workdir`` is not a folder.
  """
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"write_run_page: workdir {workdir!r} is not a folder.")
  if not is_primary_process():
    return None
  title = title or os.path.basename(os.path.abspath(workdir))
  parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
  summary = _read_text(os.path.join(workdir, "summary.txt"))
  if summary is not None:
    parts.append(f"<h2>Summary</h2><pre>{html.escape(summary, quote=False)}</pre>")
  plots = sorted(name for name in os.listdir(workdir) if name.lower().endswith(".png"))
  if plots:
    parts.append("<h2>Plots</h2>")
    parts += [f"<p><img src='{html.escape(name, quote=True)}' alt='{html.escape(name)}'></p>"
              for name in plots]
  parts += _metrics_section(os.path.join(workdir, "metrics.jsonl"))
  config = _read_text(os.path.join(workdir, "config.json"))
  if config is not None:
    parts.append(f"<h2>Config</h2><pre>{html.escape(config, quote=False)}</pre>")
  parts.append("</body></html>\n")
  path = os.path.join(workdir, PAGE_FILE)
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    f.write("\n".join(parts))
  os.replace(temporary, path)
  return path
