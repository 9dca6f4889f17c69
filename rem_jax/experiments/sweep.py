"""The sweep runner: every cell of a grid over the task space, one record each in `results.jsonl`.

A sweep config (`configs/mini_cifar10.py`, `configs/paper_*.py`) has six fields:

- `experiment = 'sweep'`;
- `cell`: a complete cell config (the fields of `configs/quickstart.py`): what every cell shares;
- `axes`: the grid, `{field: values}`. A field is a cell field (`seed`, `task`, `discovery_rate`,
  `method`, ...) or a nested one written as a nested dict (`model: {capacity: (0.5, 1.0)}`).
  The axis `base` takes the names of `BASE_PRESETS` (plain capacity 0.5, ETD, capacity 1.0),
  each of which sets several fields at once;
- `method_axes`: `{method: {setting: values}}`, hyperparameter axes that multiply only that
  method's cells (SCRUB's alpha: `{'scrub': {'alpha': (0.001, 0.01, 0.1, 10.0)}}`);
- `only`: run only the cells whose axes take the given values, `'method=rem,npo;seed=0'`
  (empty: every cell);
- `parallel_cells`: how many cells run at once (`rem_jax.experiments.concurrent`);
- `cluster`: where the cells run: in this process (`executor='none'`, the default; a config
  without the section runs so too) or as tasks of Slurm job arrays or local processes
  (`rem_jax.experiments.cluster`).

The last three select and schedule cells without changing any result, so a workdir's config
check leaves them out: a re-run with another `only` resumes the same sweep.

Every cell is the product of the axes, named by its axis values (`seed=0,base=plain,...`, the
record's `cell`). The runner trains each original model once: cells that agree on every field
that shapes the data and the training run (`cell.original_fields`, the seed included) share
`<workdir>/originals/<hash>/` (checkpoints, the ids file `corruption.json` with the forget sets
of every rate of the grid, and `train.json`). Then it runs each cell's method and appends one
record to `<workdir>/results.jsonl`.

Nothing is lost: original models are checkpointed and resume after a kill; a record is one
fsynced line; a re-run skips the cells already recorded, so a kill at any moment costs at most
the cell in flight. A method that diverges (a NaN loss) is recorded with its `error` and no
metrics, and the sweep goes on; the reports list such cells and leave them out. A workdir
holding another sweep config's results is refused (the differing fields are named) unless
`overwrite`, which deletes the records and reports (the original models stay: their folders are
named by what shapes them).
"""

import copy
import dataclasses
import itertools
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence

from absl import logging
import ml_collections
import tqdm

from rem_jax import methods
from rem_jax import sections
from rem_jax import sharding
from rem_jax import trainer
from rem_jax.experiments import cell as cell_module
from rem_jax.experiments import concurrent
from rem_jax.experiments import config_lib
from rem_jax.experiments import fields
from rem_jax.experiments import records
from rem_jax.experiments import store as store_module
from rem_jax.experiments import workdir as workdir_lib

SWEEP_FIELDS = ('experiment', 'cell', 'axes', 'method_axes', 'only', 'parallel_cells',
                'cluster')
# They select and schedule cells and change no result: the workdir's claim leaves them out.
SCHEDULING_FIELDS = ('only', 'parallel_cells', 'cluster')
ORIGINALS_DIR = 'originals'
REPORTS_DIR = 'reports'

# REM and the variants that run on a plain base: on the 100 % model the paper runs them without
# extra units (Table 4), where their default would add +50 %.
_PLAIN_REM_VARIANTS = ('rem', 'rem_ideal', 'rem_no_redirect', 'rem_no_remove')
# The paper's three bases (Tables 1, 2, 4): each name sets these cell fields.
BASE_PRESETS = {
    'plain': {'base': 'plain', 'model.capacity': 0.5},
    'etd': {'base': 'etd', 'model.capacity': 0.5, 'model.expansion': 0.5},
    'full': {'base': 'plain', 'model.capacity': 1.0,
             **{f'methods.{name}.expansion': 0.0 for name in _PLAIN_REM_VARIANTS}},
}
# Axes over these would silently fight the other axes or the per-method sections.
_NOT_AXES = ('methods', 'base')


@dataclasses.dataclass(frozen=True)
class Cell:
  """One point of the grid.

  Attributes:
    key: its name, the axis values in axis order (`base=plain,discovery_rate=0.5,method=rem`).
    axes: {axis: value} of this cell (dotted paths for nested fields).
    settings: the resolved cell config as a plain dict (`config` builds the ConfigDict).
  """
  key: str
  axes: dict
  settings: dict

  @property
  def config(self) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(self.settings)

  @property
  def method(self) -> str:
    return self.settings['method']

  @property
  def discovery_rate(self) -> float:
    return self.settings['discovery_rate']

  @property
  def original_key(self) -> str:
    return cell_module.original_key(self.settings)

  @property
  def base_label(self) -> str:
    return str(self.axes.get('base', self.settings['base']))

  @property
  def variant(self) -> str:
    """The method with its method-axis settings: 'scrub(alpha=0.1)', or just 'rem'."""
    prefix = f'methods.{self.method}.'
    settings = [f'{path[len(prefix):]}={_format(value)}' for path, value in self.axes.items()
                if path.startswith(prefix)]
    return f'{self.method}({",".join(settings)})' if settings else self.method


def _format(value) -> str:
  return value if isinstance(value, str) else json.dumps(value)


def _axes(axes: Mapping) -> list[tuple[str, list]]:
  """[(dotted path, values)] of a nested {field: values} mapping, in insertion order."""
  flat = []
  for path, values in sections.flatten(axes).items():
    if not isinstance(values, (list, tuple)):
      raise ValueError(f'axis {path}: expected a list of values, got {values!r}.')
    flat.append((path, list(values)))
  return flat


def cluster_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config's `cluster` section; the default (run in this process) where it has none (a
  config written before the section existed)."""
  return config.get('cluster') or config_lib.cluster_config()


def check_sweep_config(config: ml_collections.ConfigDict) -> None:
  sections.check_fields({*config.keys(), 'cluster'}, SWEEP_FIELDS, 'sweep config',
                        required=True)
  fields.check_cluster(cluster_section(config))


def _overrides(path: str, value) -> list[tuple[str, object]]:
  """The (field, value) pairs one axis value sets (a base preset sets several)."""
  if path == 'base':
    return list(BASE_PRESETS[value].items())
  return [(path, value)]


def _resolve(cell: dict, pairs, what: str) -> dict:
  settings = copy.deepcopy(cell)
  for path, value in pairs:
    sections.set_path(settings, path, value, what, root='the cell config')
  return settings


def _check(settings: dict, what: str) -> None:
  try:
    cell_module.check_config(ml_collections.ConfigDict(settings))
  except ValueError as error:
    raise ValueError(f'{what}: {error}') from None


def _check_axes(axes, method_axes: dict, grid_methods) -> None:
  """The axes' names and values, each checked once against the shared cell."""
  for path, values in axes:
    if path.split('.')[0] in _NOT_AXES and path != 'base':
      raise ValueError(f'axis {path}: per-method settings go in method_axes.'
                       f'{path.split(".")[1] if "." in path else "<method>"}.')
    if not values:
      raise ValueError(f'the grid is empty: axis {path} has no values.')
    if len(set(map(_format, values))) != len(values):
      raise ValueError(f'axis {path} repeats a value: {values}.')
    if path == 'base':
      unknown = [v for v in values if v not in BASE_PRESETS]
      if unknown:
        raise ValueError(f'axis base: {unknown} unknown; allowed: {sorted(BASE_PRESETS)}.')
  for name, settings in method_axes.items():
    methods.get_method(name)
    if name not in grid_methods:
      raise ValueError(f'method_axes.{name}: {name!r} is not among the grid\'s methods '
                       f'{list(grid_methods)}.')
    settings = _axes(settings)
    sections.check_fields([setting for setting, _ in settings],
                          methods.default_config(name).keys(), f'method_axes.{name}',
                          kind='settings')
    for setting, values in settings:
      if not values:
        raise ValueError(f'the grid is empty: method_axes.{name}.{setting} has no values.')


def expand_grid(config: ml_collections.ConfigDict) -> list[Cell]:
  """Every cell of a sweep config, validated: a bad value names its axis and the allowed ones.

  Each axis value is checked once against the shared cell (`cell.check_config`), so a grid of
  thousands of cells expands in a second; combinations are checked again when a cell runs.
  """
  check_sweep_config(config)
  cell = config.cell.to_dict()
  axes = _axes(config.axes.to_dict())
  method_axes = {name: _axes(settings)
                 for name, settings in config.method_axes.to_dict().items()}
  grid_methods = dict(axes).get('method', [cell['method']])
  _check_axes(axes, config.method_axes.to_dict(), grid_methods)
  for path, values in axes:
    for value in values:
      what = f'axis {path}={_format(value)}'
      _check(_resolve(cell, _overrides(path, value), what), what)
  for name, settings in method_axes.items():
    for setting, values in settings:
      for value in values:
        what = f'method_axes.{name}.{setting}={_format(value)}'
        _check(_resolve(cell, [('method', name), (f'methods.{name}.{setting}', value)], what),
               what)

  cells = []
  for values in itertools.product(*(values for _, values in axes)):
    point = dict(zip((path for path, _ in axes), values))
    pairs = [pair for path, value in point.items() for pair in _overrides(path, value)]
    method = dict(pairs).get('method', cell['method'])
    extra = [[(f'methods.{method}.{setting}', value) for value in values]
             for setting, values in method_axes.get(method, [])]
    for settings in itertools.product(*extra):
      full_point = {**point, **dict(settings)}
      cells.append(Cell(_key(full_point), full_point,
                        _resolve(cell, pairs + list(settings), f'cell {_key(full_point)}')))
  if not cells:
    raise ValueError('the grid is empty.')
  return cells


def _key(point: Mapping) -> str:
  return ','.join(f'{path}={_format(value)}' for path, value in point.items())


def _matches(value, wanted: str) -> bool:
  if _format(value) == wanted or str(value) == wanted:
    return True
  try:
    return float(value) == float(wanted)
  except (TypeError, ValueError):
    return False


def select(cells: Sequence[Cell], only: str) -> list[Cell]:
  """The cells matching every `AXIS=V1,V2` condition of `only` (conditions joined by ';')."""
  axes = list(dict.fromkeys(path for c in cells for path in c.axes))
  selected = list(cells)
  for condition in filter(None, only.split(';')):
    axis, sep, wanted = condition.partition('=')
    if not sep or not wanted:
      raise ValueError(f'only={condition!r}: expected AXIS=VALUE[,VALUE...][;AXIS=...].')
    if axis not in axes:
      raise ValueError(f'only={condition!r}: axis {axis!r} is not in the grid; axes: {axes}.')
    values = wanted.split(',')
    selected = [c for c in selected
                if axis in c.axes and any(_matches(c.axes[axis], v) for v in values)]
  if not selected:
    raise ValueError(f'only={only!r} selects no cell of the grid.')
  return selected


class Originals:
  """Trains (or resumes, or reloads) each original model once; keeps the latest in memory."""

  def __init__(self, workdir: pathlib.Path, mesh, grid: Sequence[Cell]):
    self.root, self.mesh = workdir / ORIGINALS_DIR, mesh
    self.rates = {}
    for cell in grid:  # The ids file holds every rate of the grid, whatever is selected.
      self.rates.setdefault(cell.original_key, set()).add(cell.discovery_rate)
    self._key, self._prepared, self._splits_key, self._splits = None, None, None, None

  def get(self, cell: Cell) -> tuple[cell_module.Prepared, dict]:
    key = cell.original_key
    if key != self._key:
      self._key, self._prepared = None, None  # Frees the previous model's device images first.
      config = cell.config
      splits_key = json.dumps([config.dataset, config.data.to_dict(), config.seed],
                              sort_keys=True)
      if splits_key != self._splits_key:
        self._splits, self._splits_key = None, None
        self._splits, self._splits_key = cell_module.load_splits(config), splits_key
      directory = self.root / key
      workdir_lib.claim(directory, cell_module.original_fields(cell.settings))
      prepared = cell_module.prepare(config, self.mesh, rates=sorted(self.rates[key]),
                                     workdir=directory, splits=self._splits)
      self._key, self._prepared = key, (prepared, cell_module.train_record(directory, prepared))
    return self._prepared


def _record(cell: Cell, train_record: dict, mesh, **outcome) -> dict:
  """A cell's record: `outcome` holds before, after, unlearned and the data's sizes, or the
  error of a method that diverged (then no metrics)."""
  key = cell.original_key
  return records.run_record(
      cell.settings, mesh=mesh, train=train_record, **outcome, cell=cell.key, axes=cell.axes,
      base=cell.base_label, task=cell.settings['task'], discovery_rate=cell.discovery_rate,
      variant=cell.variant, original=key,
      ids_file=f'{ORIGINALS_DIR}/{key}/{cell_module.IDS_FILE}')


def check_overrides(grid: Sequence[Cell], overrides: Sequence[str]) -> None:
  """A `cell.` field set on the command line must have an effect in some cell of the grid."""
  for path in overrides:
    if not path.startswith('cell.'):
      continue
    reasons = [fields.inert_override(path[len('cell.'):], fields.inert_fields(c.settings))
               for c in grid]
    if all(reasons):
      raise ValueError(f'--config.{path} has no effect in any cell of this sweep: {reasons[0]}.')


def selected_cells(config: ml_collections.ConfigDict, overrides: Sequence[str] = (),
                   mesh=None) -> tuple[list[Cell], list[Cell]]:
  """(the grid, the cells `config.only` selects), every field and combination checked (the
  batch sizes against `mesh` where given)."""
  grid = expand_grid(config)
  check_overrides(grid, overrides)
  cells = select(grid, config.only)
  # Each value was checked alone; now the combinations (the rate combines with nothing).
  combinations = {json.dumps({**c.settings, 'discovery_rate': None}, sort_keys=True): c
                  for c in cells}
  for cell in combinations.values():
    cell_module.check_config(cell.config, mesh)
  return grid, cells


def claim(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
          owned: Sequence[str] = ()) -> tuple[pathlib.Path, str]:
  """The usable workdir and its claim's status: the sweep's fields but the scheduling ones."""
  workdir = workdir_lib.usable(workdir)
  claimed = {k: v for k, v in config.to_dict().items() if k not in SCHEDULING_FIELDS}
  status = workdir_lib.claim(
      workdir, claimed, overwrite=overwrite,
      owned=(store_module.RESULTS_FILE, store_module.CELLS_DIR, REPORTS_DIR, *owned))
  return workdir, status  # Originals stay: their folders are named by what shapes them.


def run_cells(cells: Sequence[Cell], originals: Originals, meshes: Sequence,
              record: Callable[[dict], None], *,
              before_cell: Callable[[Cell], None] | None = None) -> None:
  """Runs `cells`, those of one original model back to back (each model is loaded or trained
  once), `len(meshes)` at a time, and passes each cell's record to `record` as it finishes.
  `before_cell(cell)` runs as each cell starts."""
  by_original = {}
  for cell in cells:
    by_original.setdefault(cell.original_key, []).append(cell)
  with tqdm.tqdm(total=len(cells), desc='cells', unit='cell', dynamic_ncols=True) as progress:
    for group in by_original.values():
      prepared, train_record = originals.get(group[0])
      placed = concurrent.placements(meshes, prepared.placed_on)

      def work(cell, cell_mesh, placed=placed):
        if before_cell is not None:
          before_cell(cell)
        try:
          return cell_module.unlearn_and_evaluate(cell.config, placed(cell_mesh), cell_mesh)
        except trainer.NonFiniteLossError as error:
          return error

      for cell, cell_mesh, outcome in concurrent.run_cells(group, meshes, work):
        if isinstance(outcome, trainer.NonFiniteLossError):
          # A method that diverges is a result too: recorded (and not retried), not fatal.
          logging.warning('Cell %s diverged: %s', cell.key, outcome)
          record(_record(cell, train_record, cell_mesh, error=str(outcome)))
        else:
          before, after, unlearned = outcome
          record(_record(
              cell, train_record, cell_mesh, before=before, after=after, unlearned=unlearned,
              num_train=len(prepared.splits.train.labels),
              num_forget=len(prepared.record.forget_ids_at(cell.discovery_rate))))
        progress.set_postfix_str(cell.key, refresh=False)
        progress.update(1)


def write_reports(workdir: pathlib.Path) -> tuple[list[dict], list[pathlib.Path]]:
  """Merges the per-cell records into `results.jsonl`, writes the reports; returns (every
  record, the reports written)."""
  from rem_jax.experiments import reports  # pylint: disable=g-import-not-at-top  (matplotlib)
  store = store_module.ResultStore(workdir / store_module.RESULTS_FILE)
  store.merge()
  stored = store.read()
  return stored, reports.write_reports(stored, workdir / REPORTS_DIR)


def run(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
        overrides: Sequence[str] = ()) -> dict:
  """Runs every cell `config.only` selects and no record holds yet; returns a summary and
  writes the reports.

  `config.parallel_cells` > 1 runs that many cells of one original model at once, each on its
  share of the devices (`rem_jax.experiments.concurrent`); every cell computes what it would
  alone on a mesh of that size. `overrides`: the fields set on the command line, each of which
  must have an effect in some cell. With `config.cluster.executor` other than 'none' the cells
  are submitted as tasks instead (`rem_jax.experiments.cluster.submit`).
  """
  check_sweep_config(config)
  if cluster_section(config).executor != 'none':
    # Imported here: the cluster module builds on this one.
    from rem_jax.experiments import cluster  # pylint: disable=g-import-not-at-top
    return cluster.submit(config, workdir, overwrite=overwrite, overrides=overrides)
  from rem_jax.experiments import reports  # pylint: disable=g-import-not-at-top  (matplotlib)
  parallel_cells = config.parallel_cells
  meshes = concurrent.cell_meshes(parallel_cells)
  grid, cells = selected_cells(config, overrides, meshes[0])
  workdir, status = claim(config, workdir, overwrite=overwrite)
  results_path = workdir / store_module.RESULTS_FILE
  store = store_module.ResultStore(results_path)
  store.merge()  # Records a cluster's tasks left in results.d/.
  finished = store.finished_cells()
  todo = [c for c in cells if c.key not in finished]
  logging.info('Sweep in %s (%s): %d cells in the grid, %d selected, %d already recorded, %d to '
               'run, %d original models, %d at a time.', workdir, status, len(grid), len(cells),
               len(cells) - len(todo), len(todo), len({c.original_key for c in todo}),
               parallel_cells)
  originals = Originals(workdir, sharding.make_mesh(), grid)
  run_cells(todo, originals, meshes, store.append)
  stored, written = write_reports(workdir)
  return {'summary': reports.summary_table(stored), 'results': str(results_path),
          'reports': [str(p) for p in written], 'ran': len(todo), 'selected': len(cells)}
