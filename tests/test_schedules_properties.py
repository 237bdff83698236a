"""Hypothesis properties of cyclr.schedules: bounds, periodicity, one-cycle peak and end, SGDR restarts,
input kinds (float / ndarray / tensor), purity and the hold past the end.

Expectations come from the definitions (closed forms, exact rational period boundaries), never from the
code under test. Where a comparison allows a tolerance, the comment next to it says which rounding it covers."""
import bisect
import math
from fractions import Fraction

import numpy as np
import torch
from hypothesis import assume, example, given, settings, strategies as st

from cyclr.schedules import cyclic, one_cycle, cosine, sgdr, constant, step_decay, warmup, flat_cos

torch.set_num_threads(1)

FAST = settings(max_examples=100, deadline=None)
ULPS = 8 * np.finfo(np.float64).eps   # a few roundings of base + (max - base) * h and friends

lrs = st.floats(1e-6, 1.)
factors = st.floats(1., 1e3)
mom_values = st.floats(0., 1., exclude_max=True)   # cyclr takes momentums in [0, 1): Adam needs beta1 < 1
step_arrays = st.lists(st.integers(0, 10**6), min_size=1, max_size=40).map(lambda v: np.array(v, dtype=np.float64))


def assert_within(values, lo, hi):
    values = np.asarray(values, dtype=np.float64)
    slack = ULPS * max(abs(lo), abs(hi))
    assert np.all(np.isfinite(values))
    assert np.all(values >= lo - slack), f"below {lo}: {values.min()!r}"
    assert np.all(values <= hi + slack), f"above {hi}: {values.max()!r}"


# ---------------------------------------------------------------------------------------------
# cyclic

@st.composite
def cyclic_args(draw):
    base_lr = draw(lrs)
    return dict(base_lr=base_lr, max_lr=base_lr * draw(factors), step_size=draw(st.integers(1, 500)),
                step_size_down=draw(st.none() | st.integers(1, 500)),
                mode=draw(st.sampled_from(['triangular', 'triangular2', 'exp_range'])),
                gamma=draw(st.floats(0.9, 1.)), moms=draw(st.none() | st.tuples(mom_values, mom_values)))


@FAST
@given(cyclic_args(), step_arrays)
def test_cyclic_stays_within_bounds(args, it):
    s = cyclic(**args)
    assert_within(s(it), args['base_lr'], args['max_lr'])
    if args['moms'] is not None:
        assert_within(s.mom(it), min(args['moms']), max(args['moms']))
    else:
        assert s.mom(it) is None


@FAST
@given(cyclic_args(), st.lists(st.integers(0, 10**5), min_size=1, max_size=40).map(np.array), st.integers(1, 5))
def test_cyclic_is_periodic(args, it, k):
    s = cyclic(**args)
    period = args['step_size'] + (args['step_size_down'] or args['step_size'])
    later = it + k * period
    amp = args['max_lr'] - args['base_lr']
    # x = 1 + it/period - cycle loses about eps*cycle to rounding (torch's CyclicLR likewise), so the tolerance
    # grows with the cycle number; the LR is a Lipschitz function of x with constant 2*amp*max(period/step)
    atol = 64 * np.finfo(float).eps * amp * (2 + later / period) * period
    # h = lr - base_lr is a difference of numbers near max_lr: it is only known to a few ulps of max_lr, however
    # small the amplitude (base_lr=1, max_lr=1+2**-52 has an amplitude of one ulp)
    atol = atol + 4 * np.spacing(args['max_lr'])
    h_now, h_later = s(it) - args['base_lr'], s(later) - args['base_lr']
    if args['mode'] == 'triangular':
        ratio = 1.
    elif args['mode'] == 'triangular2':
        ratio = 0.5 ** k
    else:
        ratio = args['gamma'] ** (k * period)
        # exp_range's envelope is gamma**it, so the *scaled* triangle repeats
    assert np.all(np.abs(h_later - h_now * ratio) <= atol + 1e-9 * np.abs(h_now * ratio)), (h_later, h_now * ratio)
    if args['moms'] is not None and args['mode'] == 'triangular':
        mom_atol = 64 * np.finfo(float).eps * abs(args['moms'][1] - args['moms'][0]) * (2 + later / period) * period
        assert np.all(np.abs(s.mom(later) - s.mom(it)) <= mom_atol)


@FAST
@given(cyclic_args())
def test_cyclic_crests_and_troughs(args):
    args = dict(args, mode='triangular')
    s = cyclic(**args)
    period = args['step_size'] + (args['step_size_down'] or args['step_size'])
    for c in range(3):
        assert s(c * period) == args['base_lr']
        assert math.isclose(s(c * period + args['step_size']), args['max_lr'], rel_tol=1e-12)


# ---------------------------------------------------------------------------------------------
# one_cycle

@st.composite
def one_cycle_args(draw, three_phase=None):
    three_phase = draw(st.booleans()) if three_phase is None else three_phase
    total_steps = draw(st.integers(4, 20_000))
    pct_start = draw(st.floats(0.02, 0.48) if three_phase else st.floats(0.02, 0.98))
    # three-phase with pct_start*total_steps <= 1 has an empty first phase (0/0 at 1): tested on its own in test_schedules.py
    assume(not three_phase or pct_start * total_steps > 1)
    return dict(lr_max=draw(lrs), total_steps=total_steps, pct_start=pct_start, div=draw(st.floats(2., 1e3)),
                div_final=draw(st.floats(2., 1e6)), moms=draw(st.tuples(mom_values, mom_values, mom_values)),
                three_phase=three_phase, anneal=draw(st.sampled_from([None, 'cos', 'linear'])))


@FAST
@given(one_cycle_args())
def test_one_cycle_stays_within_bounds(args):
    s = one_cycle(**args)
    it = np.arange(args['total_steps'] + 5)
    lr_max = args['lr_max']
    assert_within(s(it), min(lr_max / args['div'], lr_max / args['div_final']), lr_max)
    assert_within(s.mom(it), min(args['moms']), max(args['moms']))


@FAST
@given(one_cycle_args(three_phase=False))
def test_two_phase_one_cycle_peaks_at_pct_start_and_ends_at_div_final(args):
    s = one_cycle(**args)
    T, p, lr_max = args['total_steps'], args['pct_start'], args['lr_max']
    it = np.arange(T + 1)
    values = s(it)
    peak = int(np.argmax(values))
    assert math.floor(p * T) <= peak <= math.ceil(p * T), (peak, p * T)
    # the nearest step is at most half a step from pos=pct_start, i.e. a fraction d of a phase away from the peak;
    # there a linear phase is down by at most d, a cosine one by (1-cos(pi*d))/2 <= (pi*d)**2/4
    d = 0.5 / (min(p, 1 - p) * T)
    gap = d if args['anneal'] == 'linear' else (math.pi * d) ** 2 / 4
    assert lr_max * (1 - gap - 1e-12) <= values[peak] <= lr_max * (1 + 1e-12)
    # the end, and the hold after it
    assert math.isclose(s(T), lr_max / args['div_final'], rel_tol=1e-12)
    assert s(T + 1) == s(T + 10**6) == s(T)
    assert s.mom(T + 17) == s.mom(T)


@FAST
@given(st.integers(10, 20_000), st.data())
def test_two_phase_one_cycle_hits_lr_max_exactly_on_an_integer_peak(total_steps, data):
    k = data.draw(st.integers(1, total_steps - 1))
    s = one_cycle(1e-2, total_steps, pct_start=k / total_steps)
    values = s(np.arange(total_steps + 1))
    assert math.isclose(values[k], 1e-2, rel_tol=1e-14)
    assert values.max() == values[k]
    assert math.isclose(s.mom(k), 0.85, rel_tol=1e-14)


@FAST
@given(one_cycle_args(three_phase=True))
def test_three_phase_one_cycle_peak_and_end(args):
    T, p, lr_max = args['total_steps'], args['pct_start'], args['lr_max']
    assume(p * T >= 2)
    s = one_cycle(**args)
    values = s(np.arange(T + 1))
    peak = int(np.argmax(values))
    # torch's convention: phase one ends at step pct_start*T - 1
    assert math.floor(p * T - 1) <= peak <= math.ceil(p * T - 1), (peak, p * T - 1)
    assert math.isclose(s(T - 1), lr_max / args['div_final'], rel_tol=1e-12)
    assert s(T) == s(T - 1) == s(T + 10**5)
    assert s.mom(T - 1) == s.mom(T + 3)


# ---------------------------------------------------------------------------------------------
# SGDR

def period_starts(T_0, q: Fraction, upto):
    "Exact start of every period that begins at or before `upto` (`q` is T_mult as a fraction)."
    starts, start, length = [], Fraction(0), Fraction(T_0)
    while start <= upto:
        starts.append(start)
        start, length = start + length, length * q
    return starts


def exact_sgdr(steps, lr_max, T_0, q: Fraction, eta_min, decay):
    "SGDR at each integer step, from exact rational period boundaries."
    starts = period_starts(T_0, q, max(steps))
    out = []
    for i in steps:
        n = bisect.bisect_right(starts, i) - 1
        t = float((i - starts[n]) / (Fraction(T_0) * q ** n))
        out.append(eta_min + (lr_max * decay ** n - eta_min) * (1 + math.cos(math.pi * t)) / 2)
    return np.array(out)


def check_restarts(s, lr_max, T_0, q: Fraction, eta_min, decay, upto, rtol):
    "At every restart that falls on a step, the LR is back at the (decayed) peak."
    pts = [(n, int(b)) for n, b in enumerate(period_starts(T_0, q, upto)) if b.denominator == 1]
    got = s(np.array([b for _, b in pts], dtype=np.float64))
    want = np.array([lr_max * decay ** n for n, _ in pts])
    # eta_min + (peak - eta_min) * 1 rounds back to the peak to within a few ulps of eta_min
    # (and a decayed peak deep in the subnormals, 0.4**805, has only a few significant bits: `tiny` absolute)
    bad = np.abs(got - want) > rtol * want + 4 * np.finfo(float).eps * eta_min + np.finfo(float).tiny
    assert not np.any(bad), [(pts[k], got[k], want[k]) for k in np.flatnonzero(bad)[:3]]


@st.composite
def sgdr_args(draw):
    lr_max, decay = draw(lrs), draw(st.sampled_from([1.]) | st.floats(0.1, 1.))
    # a decayed peak below eta_min is its own question (test_schedules.py); here eta_min is 0 when the peak decays
    eta_min = lr_max * draw(st.floats(0., 0.5)) if decay == 1 else 0.
    return dict(lr_max=lr_max, T_0=draw(st.integers(1, 200)), eta_min=eta_min, decay=decay)


@FAST
@given(sgdr_args(), st.integers(1, 4), st.lists(st.integers(0, 5000), min_size=1, max_size=30))
def test_sgdr_int_t_mult_restarts_and_values(args, T_mult, steps):
    s = sgdr(**args, T_mult=T_mult)
    check_restarts(s, args['lr_max'], args['T_0'], Fraction(T_mult), args['eta_min'], args['decay'], 5000, rtol=1e-14)
    values = s(np.array(steps))
    np.testing.assert_allclose(values, exact_sgdr(steps, args['lr_max'], args['T_0'], Fraction(T_mult), args['eta_min'], args['decay']),
                               rtol=1e-9, atol=1e-12 * args['lr_max'])
    assert_within(values, args['eta_min'], args['lr_max'])


@FAST
@given(sgdr_args(), st.integers(21, 80), st.lists(st.integers(0, 3000), min_size=1, max_size=30))
@example(dict(lr_max=1., T_0=10, eta_min=0., decay=1.), 24, [21, 22, 23])    # T_mult=1.2: restarts at 10, 22, 36.4, ...
@example(dict(lr_max=1., T_0=5, eta_min=0., decay=1.), 24, [10, 11, 12])
def test_sgdr_float_t_mult_restarts_and_values(args, T_mult_20ths, steps):
    q = Fraction(T_mult_20ths, 20)             # T_mult = 1.05, 1.1, ..., 4.0 as the user writes it
    s = sgdr(**args, T_mult=float(q))
    check_restarts(s, args['lr_max'], args['T_0'], q, args['eta_min'], args['decay'], 3000, rtol=1e-9)
    values = s(np.array(steps))
    np.testing.assert_allclose(values, exact_sgdr(steps, args['lr_max'], args['T_0'], q, args['eta_min'], args['decay']),
                               rtol=1e-9, atol=1e-9 * args['lr_max'])
    assert_within(values, args['eta_min'], args['lr_max'])


@FAST
@given(lrs, st.integers(1, 5000), st.floats(0., 1.), st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_cosine_stays_within_bounds_and_holds(lr_max, total_steps, eta_frac, steps):
    s = cosine(lr_max, total_steps, eta_min=lr_max * eta_frac)
    assert_within(s(np.array(steps)), lr_max * eta_frac, lr_max)
    assert s(total_steps) == lr_max * eta_frac == s(total_steps + max(steps))


# ---------------------------------------------------------------------------------------------
# every policy: input kinds, purity, the hold past the end

@st.composite
def any_schedule(draw):
    kind = draw(st.sampled_from(['cyclic', 'one_cycle', 'cosine', 'sgdr', 'step', 'milestones', 'constant', 'warmup',
                                 'flat_cos']))
    lr = draw(lrs)
    T = draw(st.integers(2, 3000))
    if kind == 'cyclic':
        return cyclic(**draw(cyclic_args()), total_steps=draw(st.none() | st.integers(1, 3000)))
    if kind == 'one_cycle': return one_cycle(**draw(one_cycle_args()))
    if kind == 'cosine': return cosine(lr, T, eta_min=lr * draw(st.floats(0., 1.)))
    if kind == 'sgdr':
        return sgdr(lr, draw(st.integers(1, 100)), T_mult=draw(st.sampled_from([1, 2, 3, 1.5, 2.25])),
                    eta_min=lr * draw(st.floats(0., 1.)), decay=draw(st.floats(0.1, 1.)),
                    n_cycles=draw(st.none() | st.integers(1, 5)))
    if kind == 'step': return step_decay(lr, step_size=draw(st.integers(1, 500)), gamma=draw(st.floats(0.01, 1.)), total_steps=T)
    if kind == 'milestones':
        return step_decay(lr, milestones=draw(st.lists(st.integers(0, 3000), max_size=5)), gamma=draw(st.floats(0.01, 1.)))
    if kind == 'constant': return constant(lr, total_steps=draw(st.none() | st.just(T)))
    if kind == 'warmup': return warmup(one_cycle(lr, T), draw(st.integers(1, 100)), start_factor=draw(st.floats(0., 1.)))
    return flat_cos(lr, T, pct_start=draw(st.floats(0.05, 0.95)), div_final=draw(st.floats(1., 1e5)))


@FAST
@given(any_schedule(), st.integers(0, 10**5), st.lists(st.integers(0, 10**5), min_size=1, max_size=24))
def test_input_kinds_agree(s, i, steps):
    for fn in ([s] + ([s.mom] if s.has_mom else [])):
        ref = fn(np.array(steps, dtype=np.float64))
        assert isinstance(ref, np.ndarray) and ref.dtype == np.float64 and ref.shape == (len(steps),)
        # python int, numpy integer, python float -> float
        for scalar in (i, np.int64(i), float(i)):
            v = fn(scalar)
            assert type(v) is float
        # scalars may take other float kernels than arrays (last bit only; exact check in test_schedules.py)
        assert math.isclose(fn(i), float(fn(np.array([i]))[0]), rel_tol=1e-14, abs_tol=1e-300)
        # integer ndarray, 2-d ndarray
        np.testing.assert_array_equal(fn(np.array(steps)), ref)
        two_d = fn(np.array(steps, dtype=np.float64).reshape(1, -1, 1))
        assert two_d.shape == (1, len(steps), 1)
        np.testing.assert_array_equal(two_d.ravel(), ref)
        # tensors: integer -> float64, float64 -> float64, float32 -> float32 (the float64 values, rounded)
        t_int = fn(torch.tensor(steps))
        assert isinstance(t_int, torch.Tensor) and t_int.dtype == torch.float64
        np.testing.assert_array_equal(t_int.numpy(), ref)
        t64 = fn(torch.tensor(steps, dtype=torch.float64))
        assert t64.dtype == torch.float64
        np.testing.assert_array_equal(t64.numpy(), ref)
        small = [v for v in steps if v < 2 ** 24]              # float32 holds these step numbers exactly
        if small:
            t32 = fn(torch.tensor(small, dtype=torch.float32))
            assert t32.dtype == torch.float32
            assert torch.equal(t32, torch.tensor(fn(np.array(small, dtype=np.float64)), dtype=torch.float32))


@FAST
@given(any_schedule(), st.lists(st.floats(0, 1e5, allow_nan=False), min_size=1, max_size=24))
def test_calls_do_not_modify_input_or_schedule(s, steps):
    it = np.array(steps, dtype=np.float64)
    keep, t = it.copy(), torch.tensor(steps, dtype=torch.float64)
    t_keep, rep = t.clone(), repr(s)
    first = s(it)
    if s.has_mom: s.mom(it)
    s(t)
    np.testing.assert_array_equal(it, keep)
    assert torch.equal(t, t_keep)
    assert repr(s) == rep
    first[...] = np.nan                       # the caller owns the result
    np.testing.assert_array_equal(s(it), s(keep.copy()))
    assert not np.any(np.isnan(s(it)))


@FAST
@given(any_schedule(), st.lists(st.integers(0, 10**6), min_size=1, max_size=10))
def test_values_hold_past_the_end(s, extra):
    assume(s.total_steps is not None)
    T = s.total_steps
    after = T + np.array(extra)
    np.testing.assert_array_equal(s(after), np.full(len(extra), s(np.array([T]))[0]))
    if s.has_mom:
        np.testing.assert_array_equal(s.mom(after), np.full(len(extra), s.mom(np.array([T]))[0]))
