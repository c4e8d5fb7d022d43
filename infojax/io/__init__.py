"""Outputs of a run: JSON-lines metrics (process 0), PNG plots, the run's ``index.html`` page."""

from infojax.io.metrics import MetricsWriter
from infojax.io.metrics import format_record
from infojax.io.metrics import is_primary_process
from infojax.io.metrics import read_metrics
from infojax.io.metrics import to_json_value
from infojax.io.metrics import truncate_metrics
from infojax.io.page import write_run_page
from infojax.io.plots import plot_metrics
