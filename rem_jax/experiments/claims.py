"""The paper's claims, checked one by one against a benchmark's records (issue 18).

`claims_markdown(records)` writes one row per claim: the evidence (H×U and friends in percent,
mean ± SEM over seeds, from the records of each method at its defaults) and a verdict by the
rule stated in the row: **holds**, **does not hold**, or **cannot tell** (the gap lies within
the SEMs, or the records lack some cells the claim needs, or its runs missed their
preconditions), and **not run** where the records hold none of the claim's cells (or, for a
rule that pools or ranks the methods' cells, not every compared method on every cell). A cell
run on one seed has no SEM of its own ("± ?", so the comparisons that need it cannot tell) unless
another setting lends its seed-to-seed spread (`seed_spread`, as `across_markdown` does). A
verdict is where to look, not the last word: a claim that does not hold deserves a look at its
cells. Below the verdicts, a table of those cells (`cells_markdown`): for the methods the
claims name, per task and rate, what each run did to the found set, the corrupted set and the
rest, beside No UL and REM; and, where the records hold REM's ablations, seed 0's REM beside
them (`ablation_cells_markdown`).

The records are those that meet their preconditions (`reports.passing`); the ETD base's rows
need `configs/cpu_map.py:etd`, the tuning claim `:tuned` (table (b), chosen by
`selection.tuned`), the ablation claim `:ablations`.
"""

import collections
import functools
import math
from collections.abc import Sequence

import numpy as np

from rem_jax.diagnosis import regularity as regularity_lib
from rem_jax.experiments import records as records_lib
from rem_jax.experiments import selection
from rem_jax.methods import rem

HOLDS, FAILS, UNCLEAR = 'holds', 'does not hold', 'cannot tell'
# A setting that ran none of the cells a rule reads, or only part of the grid a rule compares
# (e.g. the rung, which runs only the cells of the claims in doubt): no evidence either way, and
# no step in the claim's movement.
NOT_RUN = 'not run'
PARTIAL_DISCOVERY_METHODS = ('retrain', 'cf', 'scrub')
REGULARITY = regularity_lib.ROWS  # Each task's row of the map.
NO_ETD = 'no ETD-base records'


def _defaults(records, base: str, method: str) -> list[dict]:
  return [r for r in records
          if r['base'] == base and r['method'] == method and r['variant'] == method]


def _mean_sem(values) -> tuple[float, float]:
  values = 100 * np.asarray(values, np.float64)
  if values.size == 0:
    return math.nan, math.nan
  sem = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
  return float(values.mean()), sem


def _pooled(records, base, method, metric='healed_x_utility'):
  return _mean_sem([r['after'][metric] for r in _defaults(records, base, method)])


def _compute(runs) -> str:
  """The runs' mean unlearning wall time in percent of training: what a lead costs."""
  return f'{np.mean([records_lib.percent_of_training(r) for r in runs]):.1f} % of training'


def _cell_groups(records, base, method) -> dict[tuple, list[float]]:
  """{(task, rate): H×U of each seed}, sorted."""
  groups = collections.defaultdict(list)
  for r in _defaults(records, base, method):
    groups[(r['task'], r['discovery_rate'])].append(r['after']['healed_x_utility'])
  return dict(sorted(groups.items()))


def _cells(records, base, method, spread=None) -> dict[tuple, tuple[float, float]]:
  """{(task, rate): (mean, SEM) of H×U over seeds}. One seed has no spread of its own: its SEM is
  the seed-to-seed standard deviation `spread` gives for the cell (`seed_spread` of another
  setting), else unknown (NaN), and the comparisons that need it cannot tell."""
  cells = {}
  for cell, values in _cell_groups(records, base, method).items():
    mean, sem = _mean_sem(values)
    if len(values) == 1:
      sem = (spread or {}).get((base, method, *cell), math.nan)
    cells[cell] = mean, sem
  return cells


def seed_spread(records) -> dict[tuple, float]:
  """{(base, method, task, rate): standard deviation of H×U over seeds, in %} of every cell run
  at its defaults on two seeds or more: the noise a one-seed setting borrows (`_cells`)."""
  spread = {}
  for base, method in {(r['base'], r['method']) for r in records if r['variant'] == r['method']}:
    for cell, values in _cell_groups(records, base, method).items():
      if len(values) > 1:
        spread[(base, method, *cell)] = float(100 * np.std(values, ddof=1))
  return spread


def _show(value) -> str:
  mean, sem = value
  if math.isnan(mean):
    return 'n/a'
  return f'{mean:.1f} ± ?' if math.isnan(sem) else f'{mean:.1f} ± {sem:.1f}'


def compare(a, b) -> str:
  """HOLDS if a exceeds b by more than their SEMs together, FAILS if b exceeds a so, else
  UNCLEAR (also when either is missing)."""
  if math.isnan(a[0]) or math.isnan(b[0]):
    return UNCLEAR
  margin = a[1] + b[1]
  return HOLDS if a[0] - b[0] > margin else FAILS if b[0] - a[0] > margin else UNCLEAR


def combine(verdicts: Sequence[str]) -> str:
  if not verdicts:
    return UNCLEAR
  if FAILS in verdicts:
    return FAILS
  return HOLDS if all(v == HOLDS for v in verdicts) else UNCLEAR


def _baselines(records, base) -> list[str]:
  """The methods run at their defaults on `base`, REM and its variants left out."""
  return sorted({r['method'] for r in records if r['base'] == base
                 and r['variant'] == r['method'] and not r['method'].startswith('rem')})


def _at(cell) -> str:
  task, rate = cell
  return f'{task} @ {rate}'



def _uncovered(records, methods) -> str | None:
  """Where `methods` (at their defaults on the plain base) did not all run the same cells
  (task, rate, seed), what is missing, else None. A rule that pools or ranks their cells compares
  like with like only on a common grid; a setting that ran part of it (the rung, which runs the
  cells of the claims in doubt) did not run that rule."""
  ran = {m: {(r['task'], r['discovery_rate'], r['seed']) for r in _defaults(records, 'plain', m)}
         for m in methods}
  grid = set().union(*ran.values())
  short = {m: len(cells) for m, cells in ran.items() if cells and cells != grid}
  if not short:
    return None
  return ('plain: ' + ', '.join(f'{m} ran {n} of the {len(grid)} cells' for m, n in
                                sorted(short.items()))
          + ' the rule compares (it needs every compared method on every cell)')


def highest_pooled(records) -> tuple[str, str]:
  """REM against the best other method on each base; a base without records cannot tell, as
  the claim is about both."""
  parts, verdicts = [], []
  if not any(_defaults(records, base, rem) for base, rem in (('plain', 'rem'), ('etd', 'rem_etd'))):
    return 'no REM records on either base', NOT_RUN
  if gap := _uncovered(records, ['rem'] + _baselines(records, 'plain')):
    return gap, NOT_RUN
  for base, rem, others in (('plain', 'rem', None), ('etd', 'rem_etd', ('etd',))):
    rivals = [m for m in (others or _baselines(records, base)) if _defaults(records, base, m)]
    if not _defaults(records, base, rem) or not rivals:
      parts.append(f'{base}: no records')
      verdicts.append(UNCLEAR)
      continue
    best = max(rivals, key=lambda m: _pooled(records, base, m)[0])
    ours, theirs = _pooled(records, base, rem), _pooled(records, base, best)
    verdicts.append(compare(ours, theirs))
    parts.append(f'{base}: {rem} {_show(ours)} at '
                 f'{_compute(_defaults(records, base, rem))}, best other {best} '
                 f'{_show(theirs)} at {_compute(_defaults(records, base, best))} '
                 f'({verdicts[-1]} on this base)')
  return '; '.join(parts), combine(verdicts)


def untuned_lead(records) -> tuple[str, str]:
  """REM at its defaults against every other method tuned per cell (a benchmark's table (b))."""
  seeds = selection.tuned_seeds(records)
  tuned = selection.tuned(records)
  rivals = {m: _pooled(tuned, 'plain', m) for m in _baselines(tuned, 'plain')}
  rem_runs = [r for r in _defaults(records, 'plain', 'rem') if r['seed'] in seeds]
  ours = _mean_sem([r['after']['healed_x_utility'] for r in rem_runs])
  if not rivals or math.isnan(ours[0]):
    return 'no tuning grid (configs/cpu_map.py:tuned)', NOT_RUN
  best = max(rivals, key=lambda m: rivals[m][0])
  return (f'seeds {seeds}: rem at its defaults {_show(ours)} at {_compute(rem_runs)}, best '
          f'other tuned per cell {best} {_show(rivals[best])} at '
          f'{_compute(_defaults(tuned, "plain", best))}', compare(ours, rivals[best]))


def no_collapse(records, spread=None) -> tuple[str, str]:
  if gap := _uncovered(records, ['rem'] + _baselines(records, 'plain')):
    return gap, NOT_RUN
  worst = {}
  for method in ['rem'] + _baselines(records, 'plain'):
    cells = _cells(records, 'plain', method, spread)
    if cells:
      cell = min(cells, key=lambda c: cells[c][0])
      worst[method] = (cell, cells[cell])
  if 'rem' not in worst:
    return 'no REM records', NOT_RUN
  rem_cell, rem_value = worst['rem']
  others = {m: w for m, w in worst.items() if m not in ('rem', 'no_ul')}
  evidence = f'REM\'s worst cell, {_at(rem_cell)}: {_show(rem_value)}; ' + ', '.join(
      f'{m} {_show(v)} at {_at(c)}' for m, (c, v) in sorted(others.items()))
  if any(compare(v, rem_value) == HOLDS for _, v in others.values()):
    return evidence, FAILS
  return evidence, HOLDS if all(rem_value[0] >= v[0] for _, v in others.values()) else UNCLEAR


def partial_discovery(records, spread=None) -> tuple[str, str]:
  parts, verdicts = [], []
  for method in PARTIAL_DISCOVERY_METHODS:
    cells = _cells(records, 'plain', method, spread)
    rates = {}  # task -> (H×U at rate 1.0, mean H×U and SEM over the partial rates)
    for task in REGULARITY:
      full = cells.get((task, 1.0))
      partial = [v for (t, rate), v in cells.items() if t == task and rate < 1.0]
      if full and partial:
        rates[task] = full, tuple(float(x) for x in np.mean(partial, axis=0))
    if not rates:
      continue
    most = max(rates, key=lambda t: rates[t][0][0] - rates[t][1][0])  # The largest drop.
    verdicts.append(combine([compare(full, part) for full, part in rates.values()]
                            + [HOLDS if most == 'poison_trigger' else FAILS]))
    parts.append(f'{method}: ' + ', '.join(
        f'{REGULARITY[t]} {_show(part)} partial vs {_show(full)} at 1.0'
        for t, (full, part) in rates.items()) + f' (largest drop: {REGULARITY[most]})')
  if not parts:
    return 'no records of ' + ', '.join(PARTIAL_DISCOVERY_METHODS), NOT_RUN
  return '; '.join(parts), combine(verdicts)


def _task_pooled(records, method, task, spread=None) -> tuple[float, float]:
  """H×U of `method` on `task`, pooled over its rates and seeds: (mean, SEM). On one seed its
  runs share one model (No UL's are the same run, SEM 0) and their spread is not the seed's
  noise: the SEM is then the mean of the cells' borrowed ones (`_cells`; unknown without
  `spread`), an upper bound on the mean's, exact where the rates' runs move together."""
  runs = [r for r in _defaults(records, 'plain', method) if r['task'] == task]
  if len({r['seed'] for r in runs}) > 1:
    return _mean_sem([r['after']['healed_x_utility'] for r in runs])
  cells = [v for (t, _), v in _cells(records, 'plain', method, spread).items() if t == task]
  if not cells:
    return math.nan, math.nan
  return float(np.mean([mean for mean, _ in cells])), float(np.mean([sem for _, sem in cells]))


def potion(records, spread=None) -> tuple[str, str]:
  cells = _cells(records, 'plain', 'potion', spread)
  rates = sorted({rate for _, rate in cells})
  if not rates:
    return 'no Potion records', NOT_RUN
  low = ('poison_trigger', rates[0])
  rivals = [c[low] for m in ['rem'] + _baselines(records, 'plain') if m != 'potion'
            for c in [_cells(records, 'plain', m, spread)] if low in c]
  median = (float(np.median([v[0] for v in rivals])), 0.0)
  swap, no_ul = (_task_pooled(records, m, 'random_label_swap', spread) for m in ('potion', 'no_ul'))
  evidence = (f'poison at rate {rates[0]}: Potion {_show(cells.get(low, (math.nan, 0.0)))} vs the '
              f'methods\' median {median[0]:.1f}; random swap: Potion {_show(swap)} vs No UL '
              f'{_show(no_ul)}')
  potion_low = cells.get(low, (math.nan, math.nan))
  if math.isnan(potion_low[0]) or math.isnan(swap[0]) or math.isnan(no_ul[0]):
    return evidence, UNCLEAR
  does_well = (FAILS if compare(median, potion_low) == HOLDS else
               HOLDS if potion_low[0] >= median[0] else UNCLEAR)
  fails_low = (UNCLEAR if math.isnan(swap[1] + no_ul[1]) else
               FAILS if compare(swap, no_ul) == HOLDS else HOLDS)
  return evidence, combine([does_well, fails_low])


def etd_by_regularity(records) -> tuple[str, str]:
  runs = _defaults(records, 'etd', 'etd')
  if not runs:
    return NO_ETD, NOT_RUN
  by_task = {t: _mean_sem([r['after']['healed_x_utility'] for r in runs if r['task'] == t])
             for t in REGULARITY}
  evidence = ', '.join(f'{REGULARITY[t]} {_show(v)}' for t, v in by_task.items())
  return f'ETD: {evidence}', compare(by_task['random_label_swap'], by_task['poison_trigger'])


def rem_etd_trade(records) -> tuple[str, str]:
  if not _defaults(records, 'etd', 'rem_etd'):
    return NO_ETD, NOT_RUN
  healed = [_pooled(records, b, m, 'healed') for b, m in (('etd', 'rem_etd'), ('plain', 'rem'))]
  utility = [_pooled(records, b, m, 'utility') for b, m in (('etd', 'rem_etd'), ('plain', 'rem'))]
  evidence = (f'Healed {_show(healed[0])} (ETD base) vs {_show(healed[1])} (plain); Utility '
              f'{_show(utility[0])} vs {_show(utility[1])}')
  return evidence, combine([compare(*healed), compare(utility[1], utility[0])])


def returned_iteration(record: dict) -> dict | None:
  """The dynamics of the iteration whose model the run returned, or None without dynamics. REM
  returns its `best_iteration` (the best training-data proxy), often not the last."""
  unlearn = record.get('unlearn', {})
  return next((it for it in unlearn.get('iterations') or []
               if it['iteration'] == unlearn['best_iteration']), None)


def redirection(records) -> tuple[str, str]:
  # Per task: REM's cells must span the tasks and rates the other methods ran.
  if gap := _uncovered(records, ['rem'] + _baselines(records, 'plain')):
    return gap, NOT_RUN
  parts, verdicts = [], []
  for task, regularity in REGULARITY.items():
    returned = [it for r in _defaults(records, 'plain', 'rem') if r['task'] == task
                for it in [returned_iteration(r)] if it]
    if not returned:
      continue
    shared = _mean_sem([it['corrupted_accuracy_shared_mask'] for it in returned])
    drop = _mean_sem([it['corrupted_accuracy_drop'] for it in returned])
    parts.append(f'{regularity}: shared mask {_show(shared)} vs drop mode {_show(drop)}')
    verdicts.append(compare(shared, drop))
  return ('; '.join(parts), combine(verdicts)) if parts else ('no REM dynamics', NOT_RUN)


def _seed0_runs(records) -> dict[tuple, dict[str, dict]]:
  """{(task, rate): {method: record}} of seed 0 on the plain base, each method at its defaults."""
  by_cell = collections.defaultdict(dict)
  for r in records:
    if r['seed'] == 0 and r['base'] == 'plain' and r['variant'] == r['method']:
      by_cell[(r['task'], r['discovery_rate'])][r['method']] = r
  return by_cell


def _best_other(runs: dict[str, dict]) -> tuple[str | None, float]:
  """The method of a cell, REM and its variants left out, with the best H×U, and that H×U."""
  others = {m: r['after']['healed_x_utility'] for m, r in runs.items() if not m.startswith('rem')}
  best = max(others, key=others.get, default=None)
  return best, others.get(best, -math.inf)


def ablations(records) -> tuple[str, str]:
  by_cell = _seed0_runs(records)
  hxu = {cell: {m: r['after']['healed_x_utility'] for m, r in runs.items()}
         for cell, runs in by_cell.items()}
  wins = [c for c, runs in by_cell.items()
          if 'rem' in runs and hxu[c]['rem'] >= _best_other(runs)[1]]
  parts, verdicts = [], []
  for ablation in rem.ABLATIONS:
    gaps = [hxu[c]['rem'] - hxu[c][ablation] for c in wins if ablation in hxu[c]]
    if gaps:
      parts.append(f'{ablation}: REM ahead on {sum(g > 0 for g in gaps)} of {len(gaps)} cells '
                   f'where REM wins (mean gap {100 * np.mean(gaps):.1f})')
      verdicts.append(HOLDS if all(g > 0 for g in gaps) else
                      FAILS if np.mean(gaps) < 0 else UNCLEAR)
  return ('; '.join(parts), combine(verdicts)) if parts else ('no ablation records', NOT_RUN)


# The rules that compare cells (mean over seeds), so need each cell's noise: see `_cells`.
_CELL_RULES = (no_collapse, partial_discovery, potion)

CLAIMS = (
    ('REM has the highest pooled H×U on both bases, without per-region tuning', highest_pooled,
     'REM ahead of the best other method by more than both SEMs on each base; a base without '
     'records cannot tell'),
    ('REM needs no per-region tuning: at its defaults it leads the others tuned per cell',
     untuned_lead, 'on the tuning grid\'s seeds, REM at its defaults ahead of the best other '
     'method, each cell\'s variant chosen by the training-data proxy (table (b)), beyond both '
     'SEMs'),
    ('REM has no region where it collapses', no_collapse,
     'no baseline\'s worst cell beats REM\'s worst by more than both SEMs'),
    ('Retrain, CF and SCRUB fail at partial discovery, most at high regularity',
     partial_discovery, 'rate 1.0 beats the partial rates beyond the SEMs on every task, and '
     'the drop is largest on the poison task'),
    ('Potion does well on the poison task even at low discovery and fails at low regularity',
     potion, 'not below the methods\' median at the lowest rate; not above No UL on random swap'),
    ('ETD does well at low regularity and fails at high regularity', etd_by_regularity,
     'random swap beats poison beyond the SEMs'),
    ('REM on the ETD base trades utility for healing against REM on the plain base',
     rem_etd_trade, 'Healed higher and Utility lower beyond the SEMs'),
    ('Redirection: D_c\'s corrupted labels live in the shared mask, not in drop mode, per task',
     redirection, 'at the iteration REM returned (its best proxy): shared-mask accuracy beats '
     'drop mode beyond the SEMs per task'),
    ('rem_no_redirect and rem_no_remove lose H×U against REM where REM wins (Table 2)',
     ablations, 'REM ahead of each ablation on every seed-0 cell where REM has the best H×U'),
)


# The methods of the cell table: the claims' baselines beside No UL (nothing done) and REM.
CELL_METHODS = ('no_ul', 'rem') + PARTIAL_DISCOVERY_METHODS + ('potion',)
# What a run did, read from its record's `after`: (column, metric).
CELL_COLUMNS = (('Healed', 'healed'), ('Utility', 'utility'),
                ('Acc(D_f)', 'forget_accuracy'),
                ('Acc(D_c) on its corrupted labels', 'corrupted_label_accuracy'),
                ('Acc(D_r)', 'retain_accuracy'))


def cells_markdown(records: Sequence[dict]) -> str:
  """The plain base's cells of CELL_METHODS: each metric's mean over seeds, in percent.

  Where a claim fails, these say how: a method that never forgets D_f (Acc(D_f) stays at No
  UL's) fails at every rate; one whose Acc(D_c) on the corrupted labels stays high while
  Acc(D_f) falls forgot the found examples and kept the corruption (the undiscovered ones
  re-teach it).
  """
  header = ' | '.join(column for column, _ in CELL_COLUMNS)
  lines = [f'| method | task (regularity) | rate | seeds | {header} |',
           '|---|---|---|---|' + '---|' * len(CELL_COLUMNS)]
  for method in CELL_METHODS:
    groups = collections.defaultdict(list)
    for r in _defaults(records, 'plain', method):
      groups[(r['task'], r['discovery_rate'])].append(r['after'])
    for task in REGULARITY:
      for rate in sorted(rate for t, rate in groups if t == task):
        runs = groups[(task, rate)]
        means = [_mean_sem([run[metric] for run in runs if metric in run])[0]
                 for _, metric in CELL_COLUMNS]
        shown = ' | '.join('n/a' if math.isnan(m) else f'{m:.0f}' for m in means)
        lines.append(f'| {method} | {task} ({REGULARITY[task]}) | {rate} | {len(runs)} | '
                     f'{shown} |')
  return '\n'.join(lines) + '\n'


def ablation_cells_markdown(records: Sequence[dict]) -> str:
  """Seed 0's cells of REM and its ablations, in percent: each one's H×U, the best baseline's
  (where REM wins, Table 2's claim applies), and at the iteration each run returned its
  accuracy on D_c against the corrupted labels with the shared mask on and in drop mode
  (redirection at work: high, then low). Empty without ablation records."""
  by_cell = _seed0_runs(records)
  if not any(m in rem.ABLATIONS for runs in by_cell.values() for m in runs):
    return ''
  variants = ('rem',) + rem.ABLATIONS
  lines = ['| task (regularity) | rate | best baseline | '
           + ' | '.join(f'{v} H×U | {v} shared / drop' for v in variants) + ' |',
           '|---|---|---|' + '---|---|' * len(variants)]
  for task in REGULARITY:
    for rate in sorted(rate for t, rate in by_cell if t == task):
      runs = by_cell[(task, rate)]
      best, best_hxu = _best_other(runs)
      cells = [f'{best} {100 * best_hxu:.1f}' if best else 'n/a']
      for variant in variants:
        run = runs.get(variant)
        if run is None:
          cells += ['n/a', 'n/a']
          continue
        returned = returned_iteration(run) or {}
        shared, drop = (returned.get(k) for k in ('corrupted_accuracy_shared_mask',
                                                  'corrupted_accuracy_drop'))
        cells += [f'{100 * run["after"]["healed_x_utility"]:.1f}',
                  'n/a' if shared is None else f'{100 * shared:.0f} / {100 * drop:.0f}']
      lines.append(f'| {task} ({REGULARITY[task]}) | {rate} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def clean_model_rate_markdown(records: Sequence[dict]) -> str:
  """How often a model that never saw D_c's corruption still gives D_c its corrupted labels:
  Retrain's Acc(D_c) on them at discovery rate 1.0 (D_r then holds no corrupted example), per
  task, mean ± SEM over seeds in %. γ (0.2: the stop rule's forget-set accuracy and the
  proxy's floor) means "forgotten" only well above this rate. Empty without such runs."""
  parts = []
  for task, regularity in REGULARITY.items():
    rates = [r['after']['corrupted_label_accuracy'] for r in _defaults(records, 'plain', 'retrain')
             if r['task'] == task and r['discovery_rate'] == 1.0
             and 'corrupted_label_accuracy' in r['after']]
    if rates:
      parts.append(f'{task} ({regularity}) {_show(_mean_sem(rates))}')
  if not parts:
    return ''
  return ('\n## A clean model on D_c\n\nAcc(D_c) on its corrupted labels after Retrain at rate '
          '1.0, which never saw them (%, mean ± SEM over seeds): ' + '; '.join(parts)
          + '. The methods\' γ of 20 % reads as "forgotten" only where this lies well '
          'below it.\n')


def judge(check, records: Sequence[dict], ran: Sequence[dict] | None = None,
          spread: dict | None = None) -> tuple[str, str]:
  """`check`'s (evidence, verdict) on `records`, those that meet their preconditions. Where
  they hold none of its cells but `ran` (every completed run) does, the runs missed their
  preconditions: that cannot tell, it is not "not run". `spread`: the seed-to-seed noise of
  one-seed cells (`seed_spread`), for the rules that compare cells."""
  if check in _CELL_RULES:
    check = functools.partial(check, spread=spread)
  evidence, verdict = check(records)
  if verdict == NOT_RUN and ran is not None and check(ran)[1] != NOT_RUN:
    return f'{evidence} that meet their preconditions', UNCLEAR
  return evidence, verdict


def claims_markdown(records: Sequence[dict], ran: Sequence[dict] | None = None,
                    spread: dict | None = None) -> str:
  """claims.md from `records`, those that meet their preconditions, and `ran`, every completed
  run (see `judge`; None: `records` are all that ran)."""
  lines = ['| claim | CPU evidence (%, mean ± SEM over seeds) | rule | verdict |',
           '|---|---|---|---|']
  for claim, check, rule in CLAIMS:
    evidence, verdict = judge(check, records, ran, spread)
    lines.append(f'| {claim} | {evidence} | {rule} | **{verdict}** |')
  return ('\n'.join(lines) + '\n\n## The cells behind the verdicts\n\n'
          'Plain base, each method at its defaults; mean over the seeds, in %. Acc(D_f) and '
          'Acc(D_c) read the given (corrupted) labels: high means the corruption is still '
          'there. Healed is accuracy on D_c against its true labels, Utility test accuracy.\n\n'
          + cells_markdown(records) + _section(
              'REM and its ablations, seed 0',
              'H×U in %; "shared / drop": accuracy on D_c against its corrupted labels at the '
              'iteration the run returned (its best proxy), with the shared forget mask on and '
              'in drop mode.',
              ablation_cells_markdown(records))
          + clean_model_rate_markdown(records))


# A verdict's place on the way from failing to holding: `movement` reads a claim's verdicts in
# the order of the settings that gave them.
_STANDING = {FAILS: 0, UNCLEAR: 1, HOLDS: 2}


def movement(verdicts: Sequence[str]) -> str:
  """Which way a claim's verdict moves across settings, in their order: 'unchanged', 'towards
  holding', 'away from holding', or 'both ways' (e.g. fails, holds, fails). Settings that did
  not run the claim's cells are skipped; with fewer than two left, 'not compared'."""
  verdicts = [v for v in verdicts if v != NOT_RUN]
  if len(verdicts) < 2:
    return 'not compared'
  steps = {(_STANDING[b] > _STANDING[a]) - (_STANDING[b] < _STANDING[a])
           for a, b in zip(verdicts, verdicts[1:])} - {0}
  if not steps:
    return 'unchanged'
  if steps == {1}:
    return 'towards holding'
  return 'away from holding' if steps == {-1} else 'both ways'


def across_markdown(settings: Sequence[tuple[str, Sequence[dict], Sequence[dict] | None]]) -> str:
  """Every claim's verdict and evidence in each setting (e.g. the CPU map at the 10 % budget,
  in the paper's proportions, one rung up the scale), and which way it moves between them:
  whether a claim's fate is the method's or the scale's.

  Args:
    settings: (label, records, ran) in the order to read them, each setting's records and
      completed runs as `claims_markdown` takes them. A setting run on one seed (the rung)
      borrows each cell's seed-to-seed noise from the nearest setting before it that ran two
      seeds or more (`seed_spread`).
  """
  labels = [label for label, _, _ in settings]
  spreads, borrowed = [], {}
  for _, records, _ in settings:
    seeds = len({r['seed'] for r in records})
    spreads.append(borrowed if seeds == 1 else None)
    if seeds > 1:
      borrowed = seed_spread(records)
  lines = ['| claim | ' + ' | '.join(labels) + ' | moves |',
           '|---|' + '---|' * len(labels) + '---|']
  for claim, check, _ in CLAIMS:
    results = [judge(check, records, ran, spread)
               for (_, records, ran), spread in zip(settings, spreads)]
    cells = [f'**{verdict}**: {evidence}' for evidence, verdict in results]
    lines.append(f'| {claim} | ' + ' | '.join(cells)
                 + f' | {movement([verdict for _, verdict in results])} |')
  return '\n'.join(lines) + '\n'


def _section(title: str, caption: str, table: str) -> str:
  return f'\n## {title}\n\n{caption}\n\n{table}' if table else ''
