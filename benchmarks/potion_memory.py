"""Device memory of Potion's importance step for the paper's models, from XLA's own accounting.

    python benchmarks/potion_memory.py            # compiles only: runs on a CPU in a minute

The reference implementation ran out of memory on a 40 GB A100 for the ViT (Table 1: "OOM").
rem_jax accumulates importances batch by batch (the gradient of a batch's mean logit norm, never
per-example gradients), so one step needs about what a training step needs. This script
compiles the importance step of the full ViT (SVHN, batch 2048) and of the ResNet-9s (CIFAR-10,
batch 512) for the local backend and prints XLA's memory analysis: arguments (the parameters
and the device-resident training split), temporaries (activations and gradients) and outputs.
Per-example gradients would need batch x parameters x 4 bytes instead; that figure is printed
for comparison.
"""

import pathlib
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from rem_jax import files, sharding
from rem_jax.data import pipeline
from rem_jax.methods import potion
from rem_jax.models import ResNet9, ViT, init_variables

_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/potion_memory.json', 'JSON path.')

# (name, model, training-split size, batch): the paper's datasets and batch sizes.
CASES = (
    ('vit_svhn', ViT(num_classes=10), 73257, 2048),
    ('resnet9_full_cifar10', ResNet9(num_classes=10), 50000, 512),
    ('resnet9_half_cifar10', ResNet9(num_classes=10, capacity=0.5), 50000, 512),
)
GIB = 2 ** 30


def main(argv):
  del argv
  mesh = sharding.make_mesh()
  rows = {}
  for name, model, num_train, batch_size in CASES:
    variables = jax.eval_shape(lambda m=model: init_variables(m, jax.random.key(0),
                                                              (32, 32, 3)))
    num_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables['params']))
    images = jax.ShapeDtypeStruct((num_train, 32, 32, 3), jnp.uint8,
                                  sharding=sharding.replicated(mesh))
    batch = pipeline.Batch(*(jax.ShapeDtypeStruct((batch_size,), dtype,
                                                  sharding=sharding.batch_sharding(mesh))
                             for dtype in (jnp.int32, jnp.int32, jnp.bool_, jnp.float32)))
    compiled = potion._importance_step(model, mesh).lower(  # pylint: disable=protected-access
        variables, images, batch).compile()
    memory = compiled.memory_analysis()
    rows[name] = {
        'parameters': num_params, 'batch_size': batch_size, 'num_train': num_train,
        'argument_gib': memory.argument_size_in_bytes / GIB,
        'temp_gib': memory.temp_size_in_bytes / GIB,
        'output_gib': memory.output_size_in_bytes / GIB,
        'per_example_gradients_gib': batch_size * num_params * 4 / GIB,
    }
  print(f'{"model":<22} {"params":>11} {"batch":>6} {"args GiB":>9} {"temp GiB":>9} '
        f'{"out GiB":>8} {"per-example grads GiB":>22}')
  for name, row in rows.items():
    print(f'{name:<22} {row["parameters"]:11,d} {row["batch_size"]:6d} '
          f'{row["argument_gib"]:9.2f} {row["temp_gib"]:9.2f} {row["output_gib"]:8.3f} '
          f'{row["per_example_gradients_gib"]:22.1f}')
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), {
      'command': ' '.join(['python'] + sys.argv), 'backend': jax.default_backend(),
      'device': str(jax.devices()[0].device_kind), 'num_devices': jax.device_count(),
      'results': rows})


if __name__ == '__main__':
  app.run(main)
