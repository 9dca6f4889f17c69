"""The claims table from hand-made records: each rule's verdict where the numbers say so."""

import itertools

import pytest

from rem_jax.experiments import claims

TASKS = tuple(claims.REGULARITY)
RATES = (0.2, 1.0)

# H×U by (method, task, rate): a world in which every claim of the paper holds.
PAPER_WORLD = {
    ('rem', 'poison_trigger'): (0.8, 0.8), ('rem', 'inter_class_confusion'): (0.7, 0.75),
    ('rem', 'random_label_swap'): (0.6, 0.7),
    ('retrain', 'poison_trigger'): (0.1, 0.8), ('retrain', 'inter_class_confusion'): (0.3, 0.7),
    ('retrain', 'random_label_swap'): (0.4, 0.6),
    ('cf', 'poison_trigger'): (0.1, 0.7), ('cf', 'inter_class_confusion'): (0.3, 0.6),
    ('cf', 'random_label_swap'): (0.4, 0.5),
    ('scrub', 'poison_trigger'): (0.1, 0.75), ('scrub', 'inter_class_confusion'): (0.3, 0.65),
    ('scrub', 'random_label_swap'): (0.4, 0.55),
    ('potion', 'poison_trigger'): (0.7, 0.7), ('potion', 'inter_class_confusion'): (0.3, 0.3),
    ('potion', 'random_label_swap'): (0.1, 0.1),
    ('no_ul', 'poison_trigger'): (0.1, 0.1), ('no_ul', 'inter_class_confusion'): (0.2, 0.2),
    ('no_ul', 'random_label_swap'): (0.2, 0.2),
}
# H×U of the ETD base's methods, one value for every rate.
ETD_WORLD = {('etd', 'poison_trigger'): 0.2, ('etd', 'random_label_swap'): 0.6,
             ('etd', 'inter_class_confusion'): 0.4, ('rem_etd', 'poison_trigger'): 0.85,
             ('rem_etd', 'random_label_swap'): 0.7, ('rem_etd', 'inter_class_confusion'): 0.75}
# Unlearning wall time per run, in seconds of a 100-second training run (others: 10).
WALL_S = {'rem': 35.0, 'retrain': 85.0}
TUNED_WALL_S = 20.0  # A tuning variant's: not its default's, so a test can tell them apart.


def _records(world, *, etd_world=ETD_WORLD, seeds=(0, 1), ablation_gap=0.1, tuning_gain=0.05,
             rem_etd=(0.95, 0.8)):
  """Records of `world`; on seed 0 CF and SCRUB also ran a tuning grid (table (b)): one variant
  `tuning_gain` ahead with the better training-data proxy, one far ahead with a worse one. REM
  returns its one iteration, which shows redirection. `rem_etd`: REM's (Healed, Utility) on
  the ETD base."""
  records = []
  jitter = {0: -0.005, 1: 0.005}
  for (method, task), by_rate in world.items():
    for rate, seed in itertools.product(RATES, seeds):
      hxu = by_rate[RATES.index(rate)] + jitter[seed]
      record = {'base': 'plain', 'method': method, 'variant': method, 'task': task,
                'discovery_rate': rate, 'seed': seed, 'train': {'wall_time_s': 100.0},
                'after': {'healed_x_utility': hxu, 'healed': hxu, 'utility': 0.9},
                'unlearn': {'wall_time_s': WALL_S.get(method, 10.0)}}
      if method == 'rem':
        record['unlearn'].update(best_iteration=1,
                                 iterations=[_iteration(1, 0.9, 0.05 + jitter[seed])])
      records.append(record)
      if method in ('cf', 'scrub') and seed == 0:
        record['after'].update(retain_accuracy=0.9, forget_accuracy=0.1)
        for rate_setting, gain, retain in ((0.01, tuning_gain, 0.95), (0.0025, 0.9, 0.5)):
          records.append({**record, 'variant': f'{method}(learning_rate={rate_setting})',
                          'after': {**record['after'], 'healed_x_utility': hxu + gain,
                                    'retain_accuracy': retain},
                          'unlearn': {'wall_time_s': TUNED_WALL_S}})
      if method == 'rem' and seed == 0:
        for ablation in ('rem_no_redirect', 'rem_no_remove'):
          records.append({**record, 'method': ablation, 'variant': ablation,
                          'after': {**record['after'], 'healed_x_utility': hxu - ablation_gap}})
  for (method, task), hxu in etd_world.items():
    for rate, seed in itertools.product(RATES, seeds):
      healed, utility = rem_etd if method == 'rem_etd' else (hxu, 0.9)
      records.append({'base': 'etd', 'method': method, 'variant': method, 'task': task,
                      'discovery_rate': rate, 'seed': seed, 'train': {'wall_time_s': 100.0},
                      'unlearn': {'wall_time_s': 10.0},
                      'after': {'healed_x_utility': hxu + jitter[seed],
                                'healed': healed + jitter[seed], 'utility': utility}})
  return records


def _iteration(number, shared, drop):
  """One iteration of REM's dynamics: accuracy on D_c against its corrupted labels with the
  shared mask on and in drop mode."""
  return {'iteration': number, 'corrupted_accuracy_shared_mask': shared,
          'corrupted_accuracy_drop': drop}


def _with_dynamics(records, task, returned, last):
  """REM's runs on `task` return iteration 1, (shared, drop) `returned`, and run on to
  iteration 2, `last`: a rule that read the last iteration would see `last`."""
  for record in records:
    if record['method'] == 'rem' and record['task'] == task:
      record['unlearn'] = {**record['unlearn'], 'best_iteration': 1, 'iterations': [
          _iteration(1, *returned), _iteration(2, *last)]}
  return records


def _turned(**cells):
  """PAPER_WORLD with some (method, task) cells changed: `method__task=(at 0.2, at 1.0)`."""
  return {**PAPER_WORLD, **{tuple(key.split('__')): value for key, value in cells.items()}}


def _verdicts(records):
  return [check(records)[1] for _, check, _ in claims.CLAIMS]


def _verdict(records, check):
  return dict(zip([c for _, c, _ in claims.CLAIMS], _verdicts(records)))[check]


# For every rule, records that turn its verdict, each part of a two-part rule on its own; each
# changes only what that rule reads.
FAILING = (
    # REM on the ETD base below ETD.
    (claims.highest_pooled, lambda: _records(PAPER_WORLD, etd_world={
        **ETD_WORLD, **{('rem_etd', task): 0.1 for task in TASKS}})),
    # SCRUB tuned per cell 0.4 ahead with the better proxy, not the variant 0.9 ahead.
    (claims.untuned_lead, lambda: _records(PAPER_WORLD, tuning_gain=0.4)),
    # REM collapses in one cell.
    (claims.no_collapse, lambda: _records(_turned(rem__random_label_swap=(0.05, 0.7)))),
    # SCRUB does fine at the partial rates on the poison.
    (claims.partial_discovery, lambda: _records(_turned(scrub__poison_trigger=(0.95, 0.95)))),
    # Retrain, CF and SCRUB lose most at partial discovery on the random swap, not the poison.
    (claims.partial_discovery, lambda: _records(_turned(
        retrain__random_label_swap=(0.0, 0.9), cf__random_label_swap=(0.0, 0.9),
        scrub__random_label_swap=(0.0, 0.9)))),
    # Potion does well at low regularity.
    (claims.potion, lambda: _records(_turned(potion__random_label_swap=(0.8, 0.8)))),
    # Potion far below the methods' median on the poison at the lowest rate.
    (claims.potion, lambda: _records(_turned(potion__poison_trigger=(0.0, 0.7)))),
    # ETD does well at high regularity, fails at low.
    (claims.etd_by_regularity, lambda: _records(PAPER_WORLD, etd_world={
        **ETD_WORLD, ('etd', 'poison_trigger'): 0.6, ('etd', 'random_label_swap'): 0.2})),
    # REM on the ETD base heals less than on the plain base (72.5).
    (claims.rem_etd_trade, lambda: _records(PAPER_WORLD, rem_etd=(0.5, 0.8))),
    # REM on the ETD base heals more and keeps more utility: no trade.
    (claims.rem_etd_trade, lambda: _records(PAPER_WORLD, rem_etd=(0.95, 0.95))),
    # On the random swap, the model REM returned keeps the corruption in drop mode; its last
    # iteration would show redirection.
    (claims.redirection, lambda: _with_dynamics(_records(PAPER_WORLD), 'random_label_swap',
                                                returned=(0.1, 0.9), last=(0.9, 0.1))),
    # The ablations beat REM.
    (claims.ablations, lambda: _records(PAPER_WORLD, ablation_gap=-0.1)),
)
# For every rule, records whose gap lies within the SEMs (not records that lack the cells).
UNDECIDED = (
    # Retrain level with REM on the plain base.
    (claims.highest_pooled, lambda: _records({
        **PAPER_WORLD, **{('retrain', task): PAPER_WORLD[('rem', task)] for task in TASKS}})),
    # SCRUB tuned per cell 72.3 on seed 0, REM at its defaults 72.0.
    (claims.untuned_lead, lambda: _records(PAPER_WORLD, tuning_gain=0.27)),
    # REM's worst cell 9.8 ± 0.5, the baselines' 10.0 ± 0.5.
    (claims.no_collapse, lambda: _records(_turned(rem__random_label_swap=(0.098, 0.7)))),
    # Retrain does as well at the partial rates as at 1.0 on the random swap.
    (claims.partial_discovery, lambda: _records(_turned(retrain__random_label_swap=(0.4, 0.4)))),
    # Potion 9.8 ± 0.5 at the lowest rate on the poison, the methods' median 10.
    (claims.potion, lambda: _records(_turned(potion__poison_trigger=(0.098, 0.7)))),
    # ETD level on the poison and the random swap.
    (claims.etd_by_regularity, lambda: _records(PAPER_WORLD, etd_world={
        **ETD_WORLD, ('etd', 'poison_trigger'): 0.6})),
    # REM heals as much on the ETD base as on the plain base.
    (claims.rem_etd_trade, lambda: _records(PAPER_WORLD, rem_etd=(0.725, 0.8))),
    # On the random swap, the returned iteration's shared mask and drop mode level.
    (claims.redirection, lambda: _with_dynamics(_records(PAPER_WORLD), 'random_label_swap',
                                                returned=(0.5, 0.5), last=(0.9, 0.1))),
    # The ablations level with REM.
    (claims.ablations, lambda: _records(PAPER_WORLD, ablation_gap=0.0)),
)


def _case_id(case):
  return case[0].__name__


def test_every_claim_holds_in_the_papers_world():
  assert _verdicts(_records(PAPER_WORLD)) == [claims.HOLDS] * len(claims.CLAIMS)
  text = claims.claims_markdown(_records(PAPER_WORLD))
  assert text.count('**holds**') == len(claims.CLAIMS)
  # Each lead with the compute of the runs it compares.
  assert ('plain: rem 72.5 ± 2.1 at 35.0 % of training, best other retrain 48.3 ± 7.3 at '
          '85.0 % of training (holds on this base); etd: rem_etd ') in text


def test_every_rule_can_fail_and_can_be_undecided():
  rules = {check for _, check, _ in claims.CLAIMS}
  assert {check for check, _ in FAILING} == {check for check, _ in UNDECIDED} == rules


@pytest.mark.parametrize('case', FAILING, ids=_case_id)
def test_each_claim_fails_when_its_numbers_turn(case):
  check, records = case
  assert _verdict(records(), check) == claims.FAILS


@pytest.mark.parametrize('case', UNDECIDED, ids=_case_id)
def test_each_claim_cannot_tell_when_its_gap_is_within_the_sems(case):
  check, records = case
  assert _verdict(records(), check) == claims.UNCLEAR


def test_the_tuned_rival_is_the_proxys_choice_with_its_own_compute():
  # The proxy picks SCRUB's variant 0.4 ahead, not the one 0.9 ahead with the worse proxy;
  # the compute is that variant's, not the default's.
  records = _records(PAPER_WORLD, tuning_gain=0.4)
  assert claims.untuned_lead(records)[0] == (
      'seeds [0]: rem at its defaults 72.0 ± 3.1 at 35.0 % of training, best other tuned per '
      'cell scrub 85.3 ± 9.8 at 20.0 % of training')


def test_redirection_reads_the_iteration_rem_returned():
  # The returned iteration shows redirection on every task, the last one on none.
  records = _records(PAPER_WORLD)
  for task in TASKS:
    _with_dynamics(records, task, returned=(0.9, 0.1), last=(0.1, 0.9))
  evidence, verdict = claims.redirection(records)
  assert verdict == claims.HOLDS
  assert evidence.startswith('high: shared mask 90.0 ± 0.0 vs drop mode 10.0 ± 0.0; ')


def test_no_records_is_not_run_and_too_few_cannot_tell():
  # A setting that ran none of a rule's cells gives no verdict.
  assert _verdicts([]) == [claims.NOT_RUN] * len(claims.CLAIMS)
  one_seed = _records(PAPER_WORLD, seeds=(0,))
  # One seed has no spread: the SEM is 0 and the gaps decide.
  assert claims.highest_pooled(one_seed)[1] == claims.HOLDS


def test_rules_that_pool_or_rank_the_methods_cells_need_every_method_on_every_cell():
  # The rung's shape: REM on the poison at the lowest rate alone, the baselines everywhere. A
  # pooled or worst-cell comparison over other cells would set REM's one cell against the
  # baselines' nine; those rules did not run, the per-cell ones still judge.
  records = [r for r in _records(PAPER_WORLD, etd_world={}) if not r['method'].startswith('rem')
             or (r['task'], r['discovery_rate']) == ('poison_trigger', 0.2)]
  gap = ('plain: rem ran 2 of the 12 cells the rule compares (it needs every compared method '
         'on every cell)')
  for check in (claims.highest_pooled, claims.no_collapse, claims.redirection):
    assert check(records) == (gap, claims.NOT_RUN), check.__name__
  assert claims.partial_discovery(records)[1] == claims.potion(records)[1] == claims.HOLDS
  # A baseline short of cells is named the same way.
  no_cf_seed_1 = [r for r in _records(PAPER_WORLD) if (r['method'], r['seed']) != ('cf', 1)]
  assert claims.no_collapse(no_cf_seed_1) == (
      'plain: cf ran 6 of the 12 cells the rule compares (it needs every compared method on '
      'every cell)', claims.NOT_RUN)


def test_a_base_without_records_is_named_and_cannot_tell():
  plain_only = [r for r in _records(PAPER_WORLD) if r['base'] == 'plain']
  evidence, verdict = claims.highest_pooled(plain_only)
  # "On both bases" with one base checked: the plain base's verdict shows, the claim's waits.
  assert '(holds on this base); etd: no records' in evidence and verdict == claims.UNCLEAR
  # Where the checked base already fails, the missing one cannot save the claim.
  etd_only = [r for r in _records(PAPER_WORLD, etd_world={
      **ETD_WORLD, **{('rem_etd', task): 0.1 for task in TASKS}}) if r['base'] == 'etd']
  assert claims.highest_pooled(etd_only) == (
      'plain: no records; etd: rem_etd 10.0 ± 0.2 at 10.0 % of training, best other etd '
      '40.0 ± 4.9 at 10.0 % of training (does not hold on this base)', claims.FAILS)
  for check in (claims.etd_by_regularity, claims.rem_etd_trade):
    assert check(plain_only) == (claims.NO_ETD, claims.NOT_RUN), check.__name__
    # ETD-base runs that all missed their preconditions: they ran, and cannot tell.
    assert claims.judge(check, plain_only, ran=_records(PAPER_WORLD)) == (
        claims.NO_ETD + ' that meet their preconditions', claims.UNCLEAR)


def test_the_cell_table_shows_each_metrics_mean_over_seeds_for_the_claims_methods():
  records = _records(PAPER_WORLD)
  assert records[0]['method'] == 'rem' and records[0]['discovery_rate'] == 0.2
  records[0]['after']['forget_accuracy'] = 0.25  # One seed's: the other seed lacks it.
  text = claims.claims_markdown(records).split('## The cells behind the verdicts')[1]
  text = text.split('\n## ')[0]  # The ablations' table follows.
  rows = [line for line in text.splitlines() if line.startswith('| ')][1:]
  # REM, poison: Healed (= H×U in these records) 0.8 ± 0.005 over seeds 0 and 1; Acc(D_f) from
  # the one seed that has it; the metrics no record has, n/a.
  assert '| rem | poison_trigger (high) | 0.2 | 2 | 80 | 90 | 25 | n/a | n/a |' in rows
  assert '| rem | poison_trigger (high) | 1.0 | 2 | 80 | 90 | n/a | n/a | n/a |' in rows
  # One row per method, task and rate of CELL_METHODS (ablations and ETD left out).
  assert len(rows) == len(claims.CELL_METHODS) * len(TASKS) * len(RATES)
  assert [row.split(' | ')[0][2:] for row in rows[::len(TASKS) * len(RATES)]] == list(
      claims.CELL_METHODS)


def test_the_ablation_table_sets_each_variant_beside_rem_and_the_best_baseline():
  records = _records(PAPER_WORLD)
  for record in records:  # REM's own redirection: its ablations' runs show none.
    if record['method'] == 'rem_no_redirect':
      # It returned its first iteration; the last one must not show.
      record['unlearn'] = {'best_iteration': 1, 'iterations': [_iteration(1, 0.02, 0.04),
                                                               _iteration(2, 0.5, 0.6)]}
  text = claims.claims_markdown(records).split('## REM and its ablations, seed 0')[1]
  # Seed 0 only: H×U 0.8 - 0.005; each ablation 0.1 behind; Potion the best baseline there.
  assert ('| poison_trigger (high) | 0.2 | potion 69.5 | 79.5 | 90 / 5 | 69.5 | 2 / 4 | 69.5 '
          '| 90 / 5 |') in text
  assert len(_table_rows(text)) == len(TASKS) * len(RATES)
  no_ablations = [r for r in records if not r['method'].startswith('rem_')]
  assert 'REM and its ablations' not in claims.claims_markdown(no_ablations)


def _table_rows(text):
  return [line for line in text.splitlines() if line.startswith('| ') and 'H×U |' not in line]


@pytest.mark.parametrize('verdicts, expected', [
    ((claims.FAILS, claims.FAILS), 'unchanged'),
    ((claims.FAILS, claims.UNCLEAR, claims.HOLDS), 'towards holding'),
    ((claims.HOLDS, claims.HOLDS, claims.UNCLEAR), 'away from holding'),
    ((claims.FAILS, claims.HOLDS, claims.UNCLEAR), 'both ways'),
    # A setting that did not run the claim's cells is no step either way.
    ((claims.FAILS, claims.NOT_RUN, claims.HOLDS), 'towards holding'),
    ((claims.FAILS, claims.FAILS, claims.NOT_RUN), 'unchanged'),
    ((claims.HOLDS, claims.NOT_RUN), 'not compared'),
])
def test_movement_reads_the_verdicts_in_the_settings_order(verdicts, expected):
  assert claims.movement(verdicts) == expected


def test_across_settings_each_claim_has_its_verdict_per_setting_and_its_movement():
  # The Potion claim fails at the first setting (Potion heals the random swap), holds at the
  # second (the paper's world).
  settings = [('10 % budget', _records(_turned(potion__random_label_swap=(0.8, 0.8))), None),
              ('proportions', _records(PAPER_WORLD), None)]
  lines = claims.across_markdown(settings).splitlines()
  assert lines[0] == '| claim | 10 % budget | proportions | moves |'
  potion_row, = [line for line in lines if line.startswith('| Potion')]
  assert potion_row.count('**does not hold**') == 1 and potion_row.count('**holds**') == 1
  assert potion_row.index('**does not hold**') < potion_row.index('**holds**')
  assert potion_row.endswith('| towards holding |')
  # Every row: each setting's verdict and evidence as its own claims table gives them.
  assert len(lines) == 2 + len(claims.CLAIMS)
  for line, (claim, check, _) in zip(lines[2:], claims.CLAIMS):
    results = [check(records) for _, records, _ in settings]
    assert line.startswith(f'| {claim} | ')
    for evidence, verdict in results:
      assert f'**{verdict}**: {evidence}' in line
    assert line.endswith(f'| {claims.movement([v for _, v in results])} |')


def test_a_one_seed_cell_borrows_its_noise_or_cannot_tell():
  # Retrain, CF and SCRUB on seed 0 alone: the gaps between rates (20-70 points) decide only
  # against a known seed-to-seed spread.
  one_seed = _records(PAPER_WORLD, seeds=(0,))
  evidence, verdict = claims.partial_discovery(one_seed)
  assert verdict == claims.UNCLEAR and 'high 9.5 ± ? partial vs 79.5 ± ? at 1.0' in evidence
  # Two seeds 1 point apart (the records' jitter): a spread of 0.71 points in every cell.
  spread = claims.seed_spread(_records(PAPER_WORLD))
  assert spread[('plain', 'retrain', 'poison_trigger', 0.2)] == pytest.approx(100 * 0.01 / 2**0.5)
  assert claims.partial_discovery(one_seed, spread=spread)[1] == claims.HOLDS
  # A spread as wide as the gaps: the same means cannot tell.
  wide = {cell: 50.0 for cell in spread}
  assert claims.partial_discovery(one_seed, spread=wide)[1] == claims.UNCLEAR


def test_potion_on_the_random_swap_at_one_seed_is_judged_by_the_seeds_noise():
  # One seed: No UL's three rates are one run (SEM 0 among them), Potion 0.6 points above it.
  # Only the seed-to-seed spread of the cells can say whether that is above No UL.
  one_seed = _records(_turned(potion__random_label_swap=(0.206, 0.206)), seeds=(0,))
  evidence, verdict = claims.potion(one_seed)
  assert verdict == claims.UNCLEAR
  assert 'random swap: Potion 20.1 ± ? vs No UL 19.5 ± ?' in evidence

  def spread(points):
    return {('plain', m, 'random_label_swap', rate): points for m in ('potion', 'no_ul')
            for rate in RATES}
  assert claims.potion(one_seed, spread=spread(0.1))[1] == claims.FAILS  # Above by 0.6 > 0.2.
  assert claims.potion(one_seed, spread=spread(1.0))[1] == claims.HOLDS  # Not above: within 2.
  # Over several seeds the runs' own SEM, as before.
  assert 'random swap: Potion 10.0 ± 0.3 vs No UL 20.0 ± 0.3' in claims.potion(
      _records(PAPER_WORLD))[0]


def test_across_settings_a_one_seed_setting_borrows_the_noise_of_the_one_before():
  one_seed = _records(PAPER_WORLD, seeds=(0,))
  rows = {}
  for order in (('proportions', 'rung'), ('rung', 'proportions')):
    data = {'proportions': _records(PAPER_WORLD), 'rung': one_seed}
    lines = claims.across_markdown([(label, data[label], None) for label in order]).splitlines()
    rows[order] = next(line for line in lines if line.startswith('| Retrain, CF and SCRUB'))
  # After the two-seed setting the rung's cells carry its spread, and the claim holds there.
  assert rows[('proportions', 'rung')].count('**holds**') == 2
  assert '± ?' not in rows[('proportions', 'rung')]
  # First, it has none to borrow: cannot tell.
  assert rows[('rung', 'proportions')].startswith(
      '| Retrain, CF and SCRUB fail at partial discovery, most at high regularity | '
      '**cannot tell**: retrain: high 9.5 ± ? partial')


def test_the_clean_models_rate_on_d_c_is_retrains_at_full_discovery():
  records = [{'base': 'plain', 'method': 'retrain', 'variant': 'retrain', 'task': task,
              'discovery_rate': rate, 'seed': seed,
              'after': {'corrupted_label_accuracy': value + 0.02 * seed}}
             for task, value in (('inter_class_confusion', 0.19), ('random_label_swap', 0.1))
             for rate in (0.5, 1.0) for seed in (0, 1)]
  # At rate 0.5 D_r still holds corrupted examples: those runs must not count.
  records = [r if r['discovery_rate'] == 1.0 else
             {**r, 'after': {'corrupted_label_accuracy': 0.9}} for r in records]
  text = claims.clean_model_rate_markdown(records)
  assert 'inter_class_confusion (medium) 20.0 ± 1.0; random_label_swap (low) 11.0 ± 1.0' in text
  assert 'poison_trigger' not in text
  assert claims.clean_model_rate_markdown([r for r in records if r['discovery_rate'] < 1]) == ''
