"""PNG plots of metric records, with matplotlib's Agg canvas (no display, no pyplot state).

matplotlib is imported inside the functions, so importing infojax does not load it.
"""

from typing import Mapping, Optional, Sequence

from infojax.io.metrics import is_primary_process


def plot_metrics(records: Sequence[Mapping], path: str, *, panels: Mapping[str, Sequence[str]],
                 x: str = "epoch", log_scale: Sequence[str] = (), title: Optional[str] = None,
                 labels: Optional[Mapping[str, str]] = None) -> Optional[str]:
  """Draws metric curves against ``x``, one panel per entry of ``panels``, into a PNG file.

  Written by process 0 only. Records lacking a key (e.g. the training loss of epoch 0) are skipped
  for that curve.

  Args:
    records: metric records (mappings), e.g. from `infojax.io.read_metrics`.
    path: the output ``.png`` file.
    panels: panel y-label -> the record keys drawn in it, e.g.
      ``{"Fisher trace": ["fisher_trace_true"], "accuracy": ["train_accuracy", "test_accuracy"]}``.
    x: the record key on the horizontal axis.
    log_scale: the panels (by y-label) drawn with a logarithmic y axis.
    title: a title over the figure.
    labels: legend text per record key (default: the key).

  Returns:
    ``path`` on process 0, else ``None``.
  """
  if not panels:
    raise ValueError("plot_metrics: panels must name at least one panel.")
  unknown = set(log_scale) - set(panels)
  if unknown:
    raise ValueError(f"plot_metrics: log_scale names panels {sorted(unknown)} not in panels.")
  if not is_primary_process():
    return None
  from matplotlib.figure import Figure

  labels = dict(labels or {})
  figure = Figure(figsize=(5.0 * len(panels), 3.6), layout="constrained")
  axes = figure.subplots(1, len(panels), squeeze=False)[0]
  for axis, (ylabel, keys) in zip(axes, panels.items()):
    for key in keys:
      points = [(r[x], r[key]) for r in records if key in r and x in r and r[key] is not None]
      if points:
        xs, ys = zip(*points)
        axis.plot(xs, ys, marker="o", markersize=2.5, label=labels.get(key, key))
    axis.set_xlabel(x)
    axis.set_ylabel(ylabel)
    if ylabel in log_scale:
      axis.set_yscale("log")
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
      axis.legend(fontsize="small")
  if title:
    figure.suptitle(title)
  figure.savefig(path, dpi=120)
  return path
