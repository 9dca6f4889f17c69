"""The XLA flags rem_jax sets at import: added where they apply, never over the user's."""

import os

from rem_jax import xla_flags

OFF = xla_flags.YNN_FUSION_FLAG + '='


def test_the_ynn_flag_is_added_on_the_measured_jaxlib_only():
  assert xla_flags.with_defaults('', '0.10.2') == OFF
  assert (xla_flags.with_defaults('--xla_force_host_platform_device_count=8', '0.10.7')
          == '--xla_force_host_platform_device_count=8 ' + OFF)
  # Another jaxlib may not know the flag, and XLA aborts on unknown flags.
  assert xla_flags.with_defaults('', '0.11.0') == ''
  # The user's own setting wins.
  theirs = xla_flags.YNN_FUSION_FLAG + '=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'
  assert xla_flags.with_defaults(theirs, '0.10.2') == theirs


def test_this_process_runs_with_it():
  # tests/conftest.py sets XLA_FLAGS before rem_jax is imported; the import added the flag.
  from jaxlib import version  # pylint: disable=g-import-not-at-top
  tokens = os.environ['XLA_FLAGS'].split()
  if version.__version__.startswith('0.10.'):
    assert OFF in tokens
  # XLA stops reading XLA_FLAGS at the first token that is no `--flag` and ignores the rest
  # without a word: such a token before the library's flag would silently undo it (it did, in
  # this suite, for a day).
  assert all(token.startswith('--') for token in tokens), tokens
