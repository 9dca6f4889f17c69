"""REM against its ablations on one trained model, with the dynamics of the paper's Fig. 5.

    python benchmarks/rem_ablations.py                      # the quickstart cell (shapes, CPU)
    python benchmarks/rem_ablations.py --config.task=random_label_swap --epochs=5

Trains the configured original model once (configs/quickstart.py and its overrides), then runs
on it: REM, REM with own masks for D_f (no shared mask), REM without expansion, rem_no_redirect
and rem_no_remove, all at the config's discovery rate. Prints Healed / Utility and the dynamics
(accuracy on D_c against the corrupted labels with the extra units off / with the shared mask
on, per iteration) and writes JSON to --output.
"""

import pathlib
import sys

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from rem_jax import evaluation, files, methods, sharding
from rem_jax.experiments import cell

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/quickstart.py', 'Cell config.')
_EPOCHS = flags.DEFINE_integer('epochs', 10, 'REM epochs for every variant.')
_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/rem_ablations.json', 'JSON path.')

VARIANTS = {
    'rem': ('rem', {}),
    'rem, own masks for D_f': ('rem', {'forget_masks': 'own'}),
    'rem, no expansion': ('rem', {'expansion': 0.0}),
    'rem_no_redirect': ('rem_no_redirect', {}),
    'rem_no_remove': ('rem_no_remove', {}),
}


def main(argv):
  del argv
  config = _CONFIG.value
  mesh = sharding.make_mesh()
  prepared = cell.prepare(config, mesh)
  model, trained = prepared.original.model, prepared.original.variables
  task = prepared.task(mesh, config.seed, config.discovery_rate)
  evaluate = evaluation.Evaluator(model, task.views, prepared.record, mesh,
                                  config.eval_batch_size)
  rows = {'no_ul': {'metrics': evaluate(trained), 'record': {}}}
  for label, (name, overrides) in VARIANTS.items():
    print(f'running {label} ...', file=sys.stderr, flush=True)
    settings = {**config.methods[name].to_dict(), 'epochs': _EPOCHS.value, **overrides}
    result = methods.get_method(name)(prepared.original, task, settings)
    rows[label] = {'metrics': evaluate(result.variables), 'record': result.record}

  print(f'{"method":<26} {"Healed":>7} {"Utility":>7} {"HxU":>7}  dynamics per iteration '
        '(D_c vs corrupted labels: drop / shared mask)')
  for label, row in rows.items():
    m = row['metrics']
    dynamics = ' '.join(f'{i["corrupted_accuracy_drop"]:.2f}/'
                        f'{i["corrupted_accuracy_shared_mask"]:.2f}'
                        for i in row['record'].get('iterations', []))
    print(f'{label:<26} {m["healed"]:7.4f} {m["utility"]:7.4f} {m["healed_x_utility"]:7.4f}  '
          f'{dynamics}')
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), {
      'command': ' '.join(['python'] + sys.argv), 'config': config.to_dict(),
      'device': str(jax.devices()[0].device_kind), 'train': prepared.train_record,
      'results': rows})


if __name__ == '__main__':
  app.run(main)
