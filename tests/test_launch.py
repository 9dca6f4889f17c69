"""The command line: a tiny run writes its records; bad configs exit non-zero with one line."""

import json
import pathlib
import subprocess
import sys

import pytest

from configs import default
import launch
from rem_jax.models import build_model

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_run_writes_config_and_model_summary(tmp_path):
  config = default.get_config()
  config.model.width_multiplier = 1 / 8
  config.model.expansion = 0.5
  config.image_size = 16
  summary = launch.run(config, str(tmp_path))
  written = json.loads((tmp_path / 'model.json').read_text())
  assert written == summary
  assert written['mask_size'] == 36 and written['base_widths'] == [4, 8, 16, 8]
  assert json.loads((tmp_path / 'config.json').read_text())['model']['expansion'] == 0.5


@pytest.mark.parametrize('override, message', [
    ('--config.model.name=resnet50', "model.name='resnet50' is not a model; allowed: "
                                     "['resnet9', 'vit']"),
    ('--config.model.capacity=1.5', 'capacity=1.5 is outside (0, 1]'),
    ('--config.model.dtype=float16', "model.dtype='float16' is not supported"),
])
def test_bad_config_exits_nonzero_with_one_readable_line(tmp_path, override, message):
  result = subprocess.run(
      [sys.executable, 'launch.py', '--config=configs/default.py', f'--workdir={tmp_path}',
       override], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('launch.py: error: ') and message in lines[0]


def test_build_model_rejects_unknown_fields():
  with pytest.raises(ValueError, match=r"model fields \['depthh'\] are not fields of vit"):
    build_model({'name': 'vit', 'depthh': 2})
