"""Figures from records."""

import pytest

from rem_jax.experiments import plots


def test_dynamics_plot_writes_a_png(tmp_path):
  iterations = [{'iteration': i, 'corrupted_accuracy_drop': 1.0 / i,
                 'corrupted_accuracy_shared_mask': 0.9} for i in (1, 2, 3)]
  path = plots.plot_dynamics(iterations, tmp_path / 'sub' / 'dynamics.png')
  data = path.read_bytes()
  assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
  with pytest.raises(ValueError, match='no iterations'):
    plots.plot_dynamics([], tmp_path / 'empty.png')
