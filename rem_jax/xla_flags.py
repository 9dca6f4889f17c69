"""XLA flags the library sets for speed, before JAX starts its backends (`import rem_jax` does).

On CPU, jaxlib 0.10's XLA hands convolutions to YNNPACK fusions. On a 2-core x86 machine they
ran the full-width ResNet-9 train step 1.2× (batch 128) to 2.1× (batch 512) slower than XLA's
own convolution emitters (`benchmarks/peer_pytorch.py`; issue 17), so rem_jax turns them off
with `--xla_cpu_experimental_ynn_fusion_type=` (an empty list of fusion types). The flag only
concerns the CPU backend; GPU runs do not read it.

The trade, measured per step on the same machine: the full-width step 2.0× faster at batch 512;
the capacity-0.5 ResNet-9 at full width 1.4× faster, and at width/4 (the CPU mini benchmark's)
1.2× faster, both at batch 128; only toy widths lose, e.g. width/8 on 16×16 images (the test
suite's) runs 15–20 % slower. Gradients come out closer to float64 without the fusions.

It is added to `XLA_FLAGS` only when
- the user's `XLA_FLAGS` does not set it already (theirs wins), and
- the installed jaxlib is one it was measured on (0.10.x): the flag is experimental, and XLA
  aborts on a flag it does not know.
XLA reads `XLA_FLAGS` once, when the first backend starts: importing rem_jax after JAX has run
a computation leaves the flag without effect (and harmless).
"""

import os

YNN_FUSION_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
_MEASURED_JAXLIB = '0.10.'


def with_defaults(xla_flags: str, jaxlib_version: str) -> str:
  """`xla_flags` (the value of XLA_FLAGS) with the library's defaults added where they apply."""
  if not jaxlib_version.startswith(_MEASURED_JAXLIB) or YNN_FUSION_FLAG in xla_flags:
    return xla_flags
  return f'{xla_flags} {YNN_FUSION_FLAG}='.strip()


def apply() -> None:
  """Adds the library's defaults to this process's `XLA_FLAGS`."""
  from jaxlib import version  # pylint: disable=g-import-not-at-top  (starts no backend)
  os.environ['XLA_FLAGS'] = with_defaults(os.environ.get('XLA_FLAGS', ''), version.__version__)
