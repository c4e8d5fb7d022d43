"""Tests for infojax.io: JSON-lines metrics (process 0 only) and PNG plots."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infojax import io

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def other_process(monkeypatch):
  """Pretends this is process 1 of a multi-host run."""
  monkeypatch.setattr(jax, "process_index", lambda *args, **kwargs: 1)


def test_writer_round_trips_float32_values_exactly(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  values = np.random.default_rng(0).normal(size=3).astype(np.float32)
  with io.MetricsWriter(path) as writer:
    writer.write({"epoch": 0, "loss": jnp.asarray(values[0]), "name": "a", "ok": True})
    writer.write({"epoch": 1, "loss": values[1], "counts": np.arange(3), "lr": None})
  records = io.read_metrics(path)
  assert [r["epoch"] for r in records] == [0, 1]
  assert np.float32(records[0]["loss"]) == values[0]
  assert np.float32(records[1]["loss"]) == values[1]
  assert records[1]["counts"] == [0, 1, 2] and records[1]["lr"] is None
  assert records[0]["name"] == "a" and records[0]["ok"] is True
  with open(path) as f:
    assert len(f.read().splitlines()) == 2


def test_writer_appends_and_requires_an_epoch(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with io.MetricsWriter(path) as writer:
    writer.write({"epoch": 0})
    with pytest.raises(ValueError, match="epoch"):
      writer.write({"loss": 1.0})
  with io.MetricsWriter(path) as writer:
    writer.write({"epoch": 1})
  assert [r["epoch"] for r in io.read_metrics(path)] == [0, 1]


def test_only_process_zero_writes(tmp_path, other_process):
  path = tmp_path / "metrics.jsonl"
  assert not io.is_primary_process()
  with io.MetricsWriter(str(path)) as writer:
    writer.write({"epoch": 0, "loss": 1.0})
  assert not path.exists()
  assert io.truncate_metrics(str(path), max_epoch=3) == []
  assert io.plot_metrics([{"epoch": 0, "loss": 1.0}], str(tmp_path / "p.png"),
                         panels={"loss": ["loss"]}) is None
  assert not (tmp_path / "p.png").exists()


def test_truncate_keeps_earlier_epochs_and_drops_a_torn_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  lines = [json.dumps({"epoch": e, "loss": 1.0 / (e + 1)}) for e in range(5)]
  path.write_text("\n".join(lines) + "\n" + '{"epoch": 5, "lo')  # killed mid-write
  assert [r["epoch"] for r in io.read_metrics(str(path))] == [0, 1, 2, 3, 4]
  kept = io.truncate_metrics(str(path), max_epoch=2)
  assert [r["epoch"] for r in kept] == [0, 1, 2]
  assert path.read_text() == "\n".join(lines[:3]) + "\n"
  assert io.truncate_metrics(str(path), max_epoch=None) == []
  assert path.read_text() == ""
  assert io.truncate_metrics(str(tmp_path / "missing.jsonl"), max_epoch=1) == []


def test_a_corrupt_line_before_the_end_is_an_error(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"epoch": 0}\n{"epo\n{"epoch": 2}\n')
  with pytest.raises(json.JSONDecodeError):
    io.read_metrics(str(path))


def test_to_json_value_converts_and_rejects():
  assert io.to_json_value({"a": np.float32(0.5), "b": (np.int64(2), jnp.ones(2))}) == {
      "a": 0.5, "b": [2, [1.0, 1.0]]}
  with pytest.raises(TypeError, match="cannot write"):
    io.to_json_value({"a": object()})


def test_format_record():
  assert io.format_record({"epoch": 3, "loss": 0.123456, "acc": 1.0}) == "epoch=3 loss=0.1235 acc=1"
  assert io.format_record({"epoch": 3, "loss": 0.5}, keys=["loss", "absent"]) == "loss=0.5"


def test_plot_metrics_writes_a_png(tmp_path):
  records = [{"epoch": 0, "trace": 2.0, "test_accuracy": 0.1}] + [
      {"epoch": e, "trace": 2.0 + e, "train_accuracy": 0.5, "test_accuracy": 0.4} for e in (1, 2)]
  path = str(tmp_path / "plot.png")
  assert io.plot_metrics(records, path, panels={"Fisher trace": ["trace"],
                                                "accuracy": ["train_accuracy", "test_accuracy"]},
                         log_scale=["Fisher trace"], title="t") == path
  with open(path, "rb") as f:
    content = f.read()
  assert content.startswith(_PNG_MAGIC) and len(content) > 5000


def test_plot_metrics_rejects_bad_panels(tmp_path):
  with pytest.raises(ValueError, match="at least one panel"):
    io.plot_metrics([], str(tmp_path / "p.png"), panels={})
  with pytest.raises(ValueError, match="log_scale"):
    io.plot_metrics([], str(tmp_path / "p.png"), panels={"a": ["x"]}, log_scale=["b"])


def test_importing_io_and_train_does_not_load_matplotlib():
  code = ("import sys, infojax.io, infojax.train; "
          "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_run_page_shows_summary_plots_metrics_and_config(tmp_path):
  (tmp_path / "summary.txt").write_text("beta = 1 & <2>: the knee\n")
  (tmp_path / "config.json").write_text(json.dumps({"seed": 3}))
  (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
  (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
  with io.MetricsWriter(str(tmp_path / "metrics.jsonl")) as writer:
    for epoch in range(3):
      writer.write({"epoch": epoch, "loss": 0.5 / (epoch + 1)})
  path = io.write_run_page(str(tmp_path), title="a <run>")
  page = (tmp_path / "index.html").read_text()
  assert path == str(tmp_path / "index.html")
  assert "<title>a &lt;run&gt;</title>" in page
  assert "beta = 1 &amp; &lt;2&gt;: the knee" in page          # escaped, verbatim
  assert page.index("src='a.png'") < page.index("src='b.png'")
  assert "3 records" in page and '"epoch": 2' in page and '"seed": 3' in page
  # Rebuilt from the files: a new plot appears, a missing summary leaves its section out.
  (tmp_path / "summary.txt").unlink()
  (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n")
  io.write_run_page(str(tmp_path))
  page = (tmp_path / "index.html").read_text()
  assert "src='c.png'" in page and "<h2>Summary</h2>" not in page
  assert f"<title>{tmp_path.name}</title>" in page
  with pytest.raises(FileNotFoundError, match="is not a folder"):
    io.write_run_page(str(tmp_path / "missing"))


def test_metrics_are_mirrored_into_tensorboard_event_files(tmp_path):
  pytest.importorskip("tensorboardX")
  from infojax.io import tensorboard
  logdir = tmp_path / "tensorboard"
  with io.MetricsWriter(str(tmp_path / "metrics.jsonl"), tensorboard_dir=str(logdir)) as writer:
    writer.write({"epoch": 0, "loss": np.float32(2.5), "name": "x", "done": True})
    writer.write({"epoch": 1, "loss": 1.25, "accuracy": 0.5, "bad": float("nan")})
  expected = [("accuracy", 1, 0.5), ("loss", 0, 2.5), ("loss", 1, 1.25)]
  assert sorted(tensorboard.read_scalars(str(logdir))) == expected
  assert tensorboard.scalars({"kind": "point", "beta": 0.1, "step": 3}) == {"point/beta": 0.1}


def test_tensorboard_without_tensorboardx_says_how_to_install_it(tmp_path, monkeypatch):
  from infojax.io import tensorboard
  monkeypatch.setitem(sys.modules, "tensorboardX", None)
  with pytest.raises(ImportError, match=r"infojax\[tensorboard\]"):
    tensorboard.EventWriter(str(tmp_path / "tensorboard"))
