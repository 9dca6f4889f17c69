"""Many runs per device: several sweep cells at once, each on its own slice of the devices.

A small model leaves a GPU mostly idle: one cell's programs are short, and between them the
host runs the method's stop rule, reads accuracies back and dispatches the next epoch. Cells
dispatched from several threads fill those gaps. Each cell still runs its own compiled programs,
unchanged, so it computes exactly what it computes alone on the same mesh
(tests/test_sweep.py checks REM at two discovery rates).

Devices: with D devices and K concurrent cells, each cell gets a mesh of D / K devices when K
divides D; with more cells than devices (D divides K), the cells share single-device meshes,
K / D per device, which is the many-runs-per-GPU case. A mesh of several devices never runs two
cells at once, because two programs' collectives interleaved across its devices could deadlock.
A record notes its own mesh size. Distinct meshes compile their programs separately (XLA
executables are specific to their devices), once per mesh, not per cell.

Why threads, not a `jax.vmap` over a runs axis: each cell's stop rule is its own (ascent stops
once its D_f is forgotten, REM flushes until then), so cells of one vmapped program would have to
run in lockstep, and vmapped convolution parameters become grouped convolutions;
`benchmarks/many_runs.py` measures the options on a device.
"""

import concurrent.futures
import queue
from collections.abc import Callable, Iterator, Sequence

import jax

from rem_jax import sharding


def cell_meshes(parallel_cells: int, devices: Sequence[jax.Device] | None = None) -> list:
  """One mesh per concurrent cell slot (the same single-device mesh may fill several slots)."""
  devices = list(jax.devices() if devices is None else devices)
  count = len(devices)
  if not isinstance(parallel_cells, int) or parallel_cells < 1:
    raise ValueError(f'parallel_cells={parallel_cells!r} must be a positive integer.')
  if count % parallel_cells == 0:
    size = count // parallel_cells
    return [sharding.make_mesh(devices[i * size:(i + 1) * size]) for i in range(parallel_cells)]
  if parallel_cells % count == 0:
    singles = [sharding.make_mesh([device]) for device in devices]
    return [singles[i % count] for i in range(parallel_cells)]
  raise ValueError(
      f'parallel_cells={parallel_cells} must divide the number of devices ({count}) or be a '
      f'multiple of it, so that every cell gets the same number of devices.')


def _device_ids(mesh) -> tuple[int, ...]:
  return tuple(device.id for device in mesh.devices.flat)


def run_cells(cells: Sequence, meshes: Sequence, work: Callable) -> Iterator[tuple]:
  """Runs `work(cell, mesh)` for every cell, `len(meshes)` at a time; yields (cell, mesh, result).

  Results come in completion order, so the caller can record each as soon as it exists. An
  exception from `work` stops the cells not yet started and is raised here, after the cells
  still running have finished. One mesh runs the cells one by one, in order, without threads.
  """
  if len(meshes) == 1:
    for cell in cells:
      yield cell, meshes[0], work(cell, meshes[0])
    return
  # Free slots; a multi-device mesh fills one slot, so it never runs two cells at once.
  slots = queue.SimpleQueue()
  for mesh in meshes:
    slots.put(mesh)

  def job(cell):
    mesh = slots.get()
    try:
      return cell, mesh, work(cell, mesh)
    finally:
      slots.put(mesh)

  with concurrent.futures.ThreadPoolExecutor(len(meshes), thread_name_prefix='cell') as pool:
    futures = [pool.submit(job, cell) for cell in cells]
    try:
      for future in concurrent.futures.as_completed(futures):
        yield future.result()
    finally:
      for future in futures:
        future.cancel()


def placements(meshes: Sequence, place: Callable) -> Callable:
  """`place(mesh)` computed once per distinct mesh, now (not from the worker threads)."""
  placed = {}
  for mesh in meshes:
    key = _device_ids(mesh)
    if key not in placed:
      placed[key] = place(mesh)
  return lambda mesh: placed[_device_ids(mesh)]
