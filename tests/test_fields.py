"""One field per concept: what each field shapes, what a run ignores, and what is an error."""

import pytest

from rem_jax import methods
from rem_jax.experiments import cell, config_lib, fields, sweep


def test_rem_runs_with_the_one_p_mem_of_the_config():
  config = config_lib.cell_with(p_mem=0.3)
  assert all('p_mem' not in config.methods[name] for name in methods.rem.VARIANTS)
  assert cell.method_settings(config).p_mem == 0.3  # method='rem' on a plain base.
  assert 'p_mem' not in cell.method_settings(config, 'npo')
  # REM's own default applies only outside a cell config (the library's rem()).
  assert methods.default_config('rem').p_mem is None


@pytest.mark.parametrize('change, retrains', [
    ({'p_mem': 0.3}, False), ({'model.expansion': 0.25}, False), ({'class_pair': (1, 2)}, False),
    ({'method': 'npo', 'discovery_rate': 1.0, 'eval_batch_size': 128}, False),
    ({'seed': 1}, True), ({'train.steps': 10}, True), ({'model.capacity': 1.0}, True),
    ({'task': 'inter_class_confusion'}, True),
])
def test_only_the_fields_that_shape_a_plain_model_retrain_it(change, retrains):
  assert (cell.original_key(config_lib.cell_with(**change))
          != cell.original_key(config_lib.cell_config())) == retrains


def test_an_etd_model_is_shaped_by_its_masks_and_extra_units():
  etd = {'base': 'etd'}
  key = cell.original_key(config_lib.cell_with(**etd))
  assert cell.original_key(config_lib.cell_with(**etd, p_mem=0.3)) != key
  assert cell.original_key(config_lib.cell_with(**etd, **{'model.expansion': 0.25})) != key
  inter = {'task': 'inter_class_confusion'}
  assert (cell.original_key(config_lib.cell_with(**inter, class_pair=(1, 2)))
          != cell.original_key(config_lib.cell_with(**inter)))


@pytest.mark.parametrize('config, inert, live', [
    ({}, ['methods.npo', 'class_pair', 'model.expansion'], ['p_mem', 'methods.rem']),
    ({'method': 'cf'}, ['p_mem', 'methods.rem'], ['methods.cf']),
    ({'base': 'etd', 'method': 'cf'}, ['methods.rem'], ['p_mem', 'model.expansion']),
    ({'base': 'etd'}, ['methods.rem.expansion'], ['p_mem', 'model.expansion', 'methods.rem.beta']),
    ({'task': 'inter_class_confusion'}, [], ['class_pair']),
])
def test_fields_a_run_ignores(config, inert, live):
  found = fields.inert_fields(config_lib.cell_with(**config).to_dict())
  for path in inert:
    assert fields.inert_override(path, found), path
  for path in live:
    assert fields.inert_override(path, found) is None, path


def test_a_sweep_override_must_shape_some_cell():
  grid = sweep.expand_grid(config_lib.sweep_config(
      config_lib.cell_config(), {'method': ('rem', 'cf')}))
  sweep.check_overrides(grid, ['cell.p_mem', 'cell.methods.cf.epochs', 'axes.method'])
  with pytest.raises(ValueError, match=r"--config.cell.methods.npo.epochs has no effect in any "
                                       r"cell of this sweep: method='rem' runs"):
    sweep.check_overrides(grid, ['cell.methods.npo.epochs'])
