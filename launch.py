"""rem_jax command line: `python launch.py --config=configs/<name>.py --workdir=<dir>`.

The logic lives in the `rem_jax` package, which tests and notebooks import; this file only
parses flags, sets up logging and turns a bad configuration into one readable line and a
non-zero exit status. Today it builds and initialises the configured model and records its
widths (`config.json`, `model.json` in the workdir); training and unlearning plug in here next.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rem_jax import files
from rem_jax.models import build_model, describe, init_variables

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Configuration file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the run\'s outputs.')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str) -> dict:
  """Builds and initialises the configured model; writes config.json and model.json."""
  model = build_model(config.model)
  logging.info('Devices: %s', jax.devices())
  logging.info('Initialising %s (seed %d).', type(model).__name__, config.seed)
  shape = (config.image_size, config.image_size, 3)
  variables = init_variables(model, jax.random.key(config.seed), shape)
  summary = describe(model)
  summary['parameters'] = int(sum(x.size for x in jax.tree.leaves(variables['params'])))
  logging.info('Model: %s', summary)
  files.write_json_atomic(f'{workdir}/config.json', config.to_dict())
  files.write_json_atomic(f'{workdir}/model.json', summary)
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except ValueError as error:
    # Configuration errors: one line, no traceback from deep inside the stack.
    print(f'launch.py: error: {error}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
