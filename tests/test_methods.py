"""The method interface and registry."""

import jax
import numpy as np
import pytest

from rem_jax import methods
from rem_jax.models import init_variables
from tests import tiny


def test_no_ul_returns_the_trained_model_unchanged():
  model = tiny.tiny_resnet(expansion=0.0)
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  original = methods.TrainedModel(model, variables)
  result = methods.get_method('no_ul')(original, task=None, config={})
  assert result.model == model
  jax.tree.map(np.testing.assert_array_equal, result.variables, variables)
  assert result.record['steps'] == 0


def test_unknown_method_names_the_registered_ones():
  with pytest.raises(ValueError, match=r"method='sscrub' is not a registered method; allowed: "
                     r"\['ascent', 'bad_teacher', 'cf', 'etd', 'no_ul', 'npo', 'potion', 'rem', "
                     r"'rem_etd', 'rem_ideal', 'rem_no_redirect', 'rem_no_remove', 'retrain', "
                     r"'scrub'\]"):
    methods.get_method('sscrub')
  with pytest.raises(ValueError, match=r"method='sscrub' is not a registered method"):
    methods.default_config('sscrub')


def test_every_method_documents_its_source_loss_stop_rule_and_defaults():
  for name in methods.METHODS:
    module = methods._module(name)  # pylint: disable=protected-access
    for heading in ('Source:', 'Loss', 'Stop rule', 'Defaults'):
      assert heading in module.__doc__, (name, heading)
    assert methods.default_config(name) is not methods.default_config(name)  # Fresh copies.
