"""Figures from run records (never from paths): REM's unlearning dynamics (the paper's Fig. 5).

Uses matplotlib's non-interactive Agg backend, so it works on headless machines and in CI.
"""

import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from rem_jax import files


def plot_dynamics(iterations: list[dict], path, title: str = 'REM dynamics') -> pathlib.Path:
  """Accuracy on D_c against its corrupted labels per iteration, extra units off vs on.

  Redirection shows as the first curve (drop mode: what the unlearned model does) falling toward
  chance while the second (the shared forget mask switches the extra units on) stays high: the
  corrupted behaviour moved into the units that are dropped.

  Args:
    iterations: a method record's 'iterations' (each with 'iteration',
      'corrupted_accuracy_drop' and 'corrupted_accuracy_shared_mask').
    path: where the PNG goes (written atomically).
    title: the figure title.
  """
  if not iterations:
    raise ValueError('plot_dynamics: the record has no iterations to plot.')
  steps = [entry['iteration'] for entry in iterations]
  figure, axes = plt.subplots(figsize=(5.0, 3.4), dpi=120)
  axes.plot(steps, [e['corrupted_accuracy_drop'] for e in iterations], 'o-',
            label='extra units off (drop mode)')
  axes.plot(steps, [e['corrupted_accuracy_shared_mask'] for e in iterations], 's--',
            label='shared forget mask on')
  axes.set(xlabel='REM iteration', ylabel='accuracy on D_c\n(corrupted labels)', ylim=(-0.02, 1.02),
           title=title)
  axes.grid(alpha=0.3)
  axes.legend(fontsize=8)
  figure.tight_layout()
  path = pathlib.Path(path)
  files.write_atomic(path, lambda f: figure.savefig(f, format='png'))
  plt.close(figure)
  return path
