"""The Recorder's table of every group's LR: its fast path (a step tried against the open run's chosen ratios in
Python floats) keeps the table -- runs, ratios, rows stored whole -- that checking every candidate at every step
gives, and every row comes back bit for bit."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from cyclr.recorder import GroupLRs, Recorder, _PY_GROUPS
from cyclr.schedules import one_cycle


def bits(a): return np.ascontiguousarray(a, dtype=np.float64).view(np.int64).tolist()

def tables(rows):
    "The table of `rows` as `append` builds it, and as it is built with every step checked against every candidate."
    fast, slow = GroupLRs(), GroupLRs()
    for r in rows:
        fast.append(r)
        slow.append(r); slow._pick = None  # no chosen ratios: the next step goes through the full check
    return fast, slow

def assert_same_table(rows):
    fast, slow = tables(rows)
    assert repr(fast.state_dict()) == repr(slow.state_dict())   # repr: NaN rows compare equal
    assert bits(fast.array()) == bits(np.array(rows, dtype=np.float64).reshape(len(rows), -1))
    back = GroupLRs(); back.load_state_dict(fast.state_dict())
    assert bits(back.array()) == bits(fast.array())


values = st.sampled_from([0., -0., 1e-3, 2e-3, 3e-7, 1e-300, 5e-324, 1e300, np.inf, np.nan, 1., 0.1, 0.3])

@given(n_groups=st.sampled_from([1, 2, 3, _PY_GROUPS, _PY_GROUPS + 1]), seed=st.integers(0, 2**32 - 1),
       odd=st.lists(st.tuples(st.integers(0, 199), values), max_size=12))
def test_the_fast_path_keeps_the_table_of_the_full_check(n_groups, seed, odd):
    "Fixed ratios, ratios that change, zero, huge, tiny, infinite and NaN LRs, signed zeros."
    rng = np.random.default_rng(seed)
    base = rng.uniform(1e-6, 1, 200) * rng.choice([1., 1e-200, 1e200], 200, p=[.9, .05, .05])
    mults = np.r_[rng.uniform(1e-3, 1, n_groups - 1), 1.]
    rows = base[:, None] * mults
    rows[120:] = base[120:, None] * np.r_[rng.uniform(.1, 1, n_groups - 1), rng.uniform(.5, 2)]   # other ratios
    for step, v in odd: rows[step, rng.integers(0, n_groups)] = v
    assert_same_table(rows.tolist())


def test_a_chosen_ratio_that_stops_fitting_is_replaced_exactly():
    "Ratios between two floats: the first candidate often fits a few steps only, then the others catch up."
    rng = np.random.default_rng(0)
    caught = 0
    for _ in range(50):
        base, mults = rng.uniform(1e-4, 1, 300), np.r_[rng.uniform(.1, 1, 4), 1.]
        rows = base[:, None] * mults
        fast, _ = tables(rows.tolist())
        caught += fast._synced < len(rows)  # steps joined by the fast path after the last full check
        assert_same_table(rows.tolist())
    assert caught  # the fast path ran in these tables


def test_a_fixed_ratio_fit_checks_the_candidates_a_few_times_not_every_step(monkeypatch):
    "2,000 one-cycle steps of 4 groups at fixed ratios: one run, and the full check runs a handful of times."
    T, mults = 2000, np.array([1e-3, 1e-2, 1e-1, 1.])
    s = np.asarray(one_cycle(1e-2, T)(np.arange(T)), dtype=np.float64)
    calls = []
    fits = GroupLRs._fits
    monkeypatch.setattr(GroupLRs, '_fits', lambda self, *a: calls.append(1) or fits(self, *a))
    class Opt: param_groups = [{'lr': 0., 'betas': (.9, .99)} for _ in mults]
    rec = Recorder()
    for t in range(T):
        for g, lr in zip(Opt.param_groups, (s[t] * mults).tolist()): g['lr'] = lr
        rec.log_step(Opt)
    assert rec.group_lr_array().tobytes() == (s[:, None] * mults).tobytes()  # adds the rows logged since the last flush
    assert rec._group_lrs._k == 1 and rec._group_lrs._e == 0
    assert len(calls) < 10, len(calls)


@pytest.mark.parametrize('row', [[1e-3], (1e-3, 2e-3), np.array([[1e-3, 2e-3]]), [np.float32(0.1), 1]])
def test_append_takes_what_it_always_took(row):
    "Lists, tuples, arrays of any shape and NumPy scalars: the row as float64, flattened."
    t = GroupLRs(); t.append(row); t.append(row)
    assert bits(t.array()) == bits(np.tile(np.asarray(row, dtype=np.float64).reshape(-1), (2, 1)))
