"""Tests for configs/*.py and infojax.config: variants, command-line overrides, config.json."""

import glob
import importlib.util
import json
import os

import ml_collections
import pytest
from absl import app
from absl import flags

from infojax import config as config_lib
from infojax import train

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG_FILES = sorted(glob.glob(os.path.join(_ROOT, "configs", "*.py")))


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _parse(*args):
  """Parses script flags into a fresh flag registry; returns (config, workdir)."""
  argv = ["script", *args]
  flag_values = flags.FlagValues()
  script_flags = config_lib.define_flags(flag_values, argv=argv)
  return script_flags.read(flag_values(argv))


def test_there_are_configs():
  assert os.path.join(_ROOT, "configs", "info_plot.py") in _CONFIG_FILES


@pytest.mark.parametrize("path", _CONFIG_FILES, ids=os.path.basename)
def test_every_config_has_a_smaller_smoke_variant_and_a_launch_command(path):
  module = _load(path)
  name = os.path.basename(path)[:-3]
  assert f"scripts/{name}.py --config=configs/{name}.py" in module.__doc__
  full, smoke = module.get_config(), module.get_config("smoke")
  assert isinstance(full, ml_collections.ConfigDict)
  assert isinstance(smoke, ml_collections.ConfigDict)
  assert set(config_lib.config_to_dict(full)) == set(config_lib.config_to_dict(smoke))
  # The smoke variant runs less: fewer epochs of training, or fewer steps of a simulation.
  length = "num_epochs" if "num_epochs" in full else "num_steps"
  assert smoke[length] < full[length]
  with pytest.raises(ValueError, match="unknown config argument"):
    module.get_config("no-such-variant")
  if "optimizer" in full:  # the optimiser part builds
    train.make_optimizer(full.optimizer, steps_per_epoch=3, num_epochs=full[length])


@pytest.mark.parametrize("path", _CONFIG_FILES, ids=os.path.basename)
def test_every_config_can_write_tensorboard_events_and_does_not_by_default(path):
  module = _load(path)
  for config in (module.get_config(), module.get_config("smoke")):
    assert config.tensorboard is False
    with pytest.raises(TypeError):  # a boolean field: --config.tensorboard=True parses as one
      config.tensorboard = "yes"


@pytest.mark.parametrize("path", _CONFIG_FILES, ids=os.path.basename)
def test_every_config_says_how_to_watch_a_run_in_tensorboard(path):
  doc = _load(path).__doc__
  assert "--config.tensorboard=True" in doc and "tensorboard --logdir WORKDIR" in doc


def test_command_line_overrides_reach_nested_fields(tmp_path):
  config, workdir = _parse(f"--config={_ROOT}/configs/info_plot.py:smoke",
                           "--config.optimizer.lr=0.125", "--config.dataset=cifar10",
                           "--config.fisher.chunk_size=16", "--config.tensorboard=True",
                           f"--workdir={tmp_path}")
  assert config.optimizer.lr == 0.125
  assert config.tensorboard is True
  assert config.dataset == "cifar10"
  assert config.fisher.chunk_size == 16
  assert config.num_epochs == 2  # still the smoke variant
  assert workdir == str(tmp_path)


@pytest.mark.parametrize("override, name", [
    ("--config.optimizer.learning_rate=0.1", "learning_rate"), ("--config.no_such=1", "no_such")])
def test_unknown_keys_are_errors(override, name, tmp_path):
  # ml_collections reports an unknown field as an AttributeError naming it.
  with pytest.raises((flags.Error, AttributeError), match=name):
    _parse(f"--config={_ROOT}/configs/info_plot.py", override, f"--workdir={tmp_path}")


def test_wrongly_typed_overrides_are_errors(tmp_path):
  with pytest.raises(flags.Error):
    _parse(f"--config={_ROOT}/configs/info_plot.py", "--config.num_epochs=many",
           f"--workdir={tmp_path}")


def test_positional_arguments_are_errors(tmp_path):
  with pytest.raises(app.UsageError, match="unexpected positional"):
    _parse(f"--config={_ROOT}/configs/info_plot.py", f"--workdir={tmp_path}", "stray")


def test_config_and_workdir_are_required():
  with pytest.raises(flags.Error):
    _parse(f"--config={_ROOT}/configs/info_plot.py")


def test_prepare_workdir_saves_the_config_and_refuses_a_different_one(tmp_path):
  config = _load(os.path.join(_ROOT, "configs", "info_plot.py")).get_config("smoke")
  workdir = config_lib.prepare_workdir(config, str(tmp_path / "run"))
  with open(os.path.join(workdir, config_lib.CONFIG_FILE)) as f:
    saved = json.load(f)
  assert saved["optimizer"]["lr"] == config.optimizer.lr
  assert saved["fisher"]["kinds"] == list(config.fisher.kinds)
  assert saved["data_dir"] is None
  assert ml_collections.ConfigDict(saved).to_dict() == json.loads(config.to_json())
  # The same config again is fine (a resumed run); a changed one is refused, naming the field.
  assert config_lib.prepare_workdir(config, workdir) == workdir
  # TensorBoard only adds output: a run may be resumed with it turned on.
  config.tensorboard = not config.tensorboard
  assert config_lib.prepare_workdir(config, workdir) == workdir
  config.optimizer.lr = 0.5
  with pytest.raises(ValueError, match=r"optimizer\.lr: 0\.05 -> 0\.5"):
    config_lib.prepare_workdir(config, workdir)


def test_summary_line():
  line = config_lib.summary_line("job", {"epochs": 3, "test_accuracy": 0.91234}, "/tmp/w")
  assert line == "job: epochs=3 test_accuracy=0.9123 (outputs in /tmp/w)"
