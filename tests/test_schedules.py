"""Agreement, special points, torch adapter and bad input for cyclr.schedules.

References are independent of the code under test: torch's own schedulers stepped on a real
optimizer, the CLR paper's formulas and fastai's one-cycle formulas written out here, and closed
forms at special points. Property-based tests live in test_schedules_properties.py."""
import io
import math
import pickle
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import lr_scheduler as tls

from cyclr.schedules import (SchedLin, SchedCos, SchedExp, SchedPoly, SchedNo, combine_scheds, Schedule, ScheduleLR,
                             cyclic, one_cycle, cosine, sgdr, constant, step_decay, warmup, flat_cos)

torch.set_num_threads(1)  # shared 2-core machine; everything here is tiny

RTOL = 1e-9  # SPEC section 1: "equal to torch's schedulers to 1e-9 relative"


# ---------------------------------------------------------------------------------------------
# helpers

def max_rel_err(actual, expected) -> float:
    "Largest |actual - expected| / |expected|; where `expected` is exactly 0, `actual` must be too."
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    zero = expected == 0
    assert np.all(actual[zero] == 0), f"non-zero where the reference is 0: {actual[zero]}"
    return float(np.max(np.abs(actual[~zero] - expected[~zero]) / np.abs(expected[~zero]), initial=0.))


def torch_trace(make_scheduler, n_steps: int, lr: float = 0.1, momentum: float = 0.9, key: str = 'momentum'):
    "The LR and momentum that `make_scheduler(optimizer)` sets on a real SGD-momentum optimizer before each of `n_steps` steps."
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(5, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make_scheduler(opt)
    p.grad = torch.ones_like(p)  # a real update every step, so the optimizer is genuinely stepped
    lrs, moms = np.empty(n_steps), np.empty(n_steps)
    for i in range(n_steps):
        lrs[i], moms[i] = opt.param_groups[0]['lr'], opt.param_groups[0][key]
        opt.step()
        sched.step()
    return lrs, moms


# ---------------------------------------------------------------------------------------------
# CyclicLR

CYCLIC_CASES = [  # mode, step_size (up), step_size_down, gamma
    ('triangular', 500, None, 1.),
    ('triangular', 300, 700, 1.),      # asymmetric: slow fall
    ('triangular', 613, 89, 1.),       # asymmetric: fast fall, odd sizes
    ('triangular2', 400, None, 1.),
    ('triangular2', 250, 150, 1.),
    ('exp_range', 400, None, 0.9995),
    ('exp_range', 200, 600, 0.999),
]


@pytest.mark.parametrize('mode,up,down,gamma', CYCLIC_CASES)
def test_cyclic_matches_torch_cycliclr(mode, up, down, gamma):
    n, base_lr, max_lr, base_m, max_m = 6000, 1e-3, 6e-3, 0.8, 0.9
    t_lr, t_mom = torch_trace(lambda o: tls.CyclicLR(o, base_lr, max_lr, step_size_up=up, step_size_down=down, mode=mode,
                                                     gamma=gamma, cycle_momentum=True, base_momentum=base_m,
                                                     max_momentum=max_m), n)
    s = cyclic(base_lr, max_lr, step_size=up, step_size_down=down, mode=mode, gamma=gamma, moms=(max_m, base_m))
    it = np.arange(n)
    assert max_rel_err(s(it), t_lr) < RTOL
    assert max_rel_err(s.mom(it), t_mom) < RTOL


def test_cyclic_without_momentum_leaves_it_alone():
    t_lr, t_mom = torch_trace(lambda o: tls.CyclicLR(o, 1e-3, 6e-3, step_size_up=100, cycle_momentum=False), 1000)
    s = cyclic(1e-3, 6e-3, step_size=100)
    assert not s.has_mom and s.mom(5) is None
    assert np.all(t_mom == 0.9)  # torch's momentum untouched too
    assert max_rel_err(s(np.arange(1000)), t_lr) < RTOL


def _by_cycle_vectorisable(c): return 1 / (1 + 0.5 * (c - 1))
def _by_cycle_scalar_only(c): return 0.5 * (1 + math.cos(c))            # math.cos: forces cyclr's per-element path
def _by_iter_vectorisable(it): return 1 / (1 + it / 1500)
def _by_iter_scalar_only(it): return math.exp(-it / 3000) * (1.5 + math.sin(it / 97)) / 2.5


@pytest.mark.parametrize('scale_fn,scale_mode', [(_by_cycle_vectorisable, 'cycle'), (_by_cycle_scalar_only, 'cycle'),
                                                 (_by_iter_vectorisable, 'iterations'), (_by_iter_scalar_only, 'iterations')])
def test_cyclic_custom_scale_fn_matches_torch(scale_fn, scale_mode):
    n = 4000
    t_lr, t_mom = torch_trace(lambda o: tls.CyclicLR(o, 1e-4, 1e-2, step_size_up=230, step_size_down=170, scale_fn=scale_fn,
                                                     scale_mode=scale_mode, base_momentum=0.85, max_momentum=0.95), n)
    s = cyclic(1e-4, 1e-2, step_size=230, step_size_down=170, scale_fn=scale_fn, scale_mode=scale_mode, moms=(0.95, 0.85))
    it = np.arange(n)
    assert max_rel_err(s(it), t_lr) < RTOL
    assert max_rel_err(s.mom(it), t_mom) < RTOL


# The CLR paper (Smith 2017, section 3.1), written out for one iteration at a time.
def clr_paper(it, base_lr, max_lr, step_size, scale):
    cycle = math.floor(1 + it / (2 * step_size))
    x = abs(it / step_size - 2 * cycle + 1)
    return base_lr + (max_lr - base_lr) * max(0., 1 - x) * scale(cycle, it)


PAPER_SCALES = {'triangular': lambda cycle, it: 1.,
                'triangular2': lambda cycle, it: 1 / 2 ** (cycle - 1),
                'exp_range': lambda cycle, it: 0.99994 ** it}


@pytest.mark.parametrize('mode', PAPER_SCALES)
@pytest.mark.parametrize('step_size', [1, 7, 500, 2000])
def test_cyclic_is_the_clr_paper_formula(mode, step_size):
    base_lr, max_lr = 1e-3, 6e-3
    s = cyclic(base_lr, max_lr, step_size=step_size, mode=mode, gamma=0.99994)
    it = np.arange(min(5 * 2 * step_size + 1, 20_001))
    expected = [clr_paper(i, base_lr, max_lr, step_size, PAPER_SCALES[mode]) for i in it]
    # the paper's x and ours round differently in the last bit, nothing more
    np.testing.assert_allclose(s(it), expected, rtol=1e-12, atol=0)
    # special points: troughs at multiples of 2*step_size, crests at odd multiples of step_size
    for k in range(4):
        assert s(2 * k * step_size) == base_lr
        crest = base_lr + (max_lr - base_lr) * PAPER_SCALES[mode](k + 1, (2 * k + 1) * step_size)
        assert math.isclose(s((2 * k + 1) * step_size), crest, rel_tol=1e-13)


# ---------------------------------------------------------------------------------------------
# OneCycleLR (three-phase) and fastai's two-phase one cycle

@pytest.mark.parametrize('anneal', ['linear', 'cos'])
@pytest.mark.parametrize('total_steps,pct_start,div,final_div', [(3000, 0.3, 25., 1e4), (2001, 0.25, 10., 100.),
                                                                 (4096, 0.1, 25., 1e4), (997, 0.45, 3., 7.)])
def test_three_phase_one_cycle_matches_torch_onecyclelr(anneal, total_steps, pct_start, div, final_div):
    lr_max = 0.05
    t_lr, t_mom = torch_trace(lambda o: tls.OneCycleLR(o, lr_max, total_steps=total_steps, pct_start=pct_start,
                                                       anneal_strategy=anneal, cycle_momentum=True, base_momentum=0.85,
                                                       max_momentum=0.95, div_factor=div, final_div_factor=final_div,
                                                       three_phase=True), total_steps)
    s = one_cycle(lr_max, total_steps, pct_start=pct_start, div=div, div_final=div * final_div, moms=(0.95, 0.85, 0.95),
                  three_phase=True, anneal=None if anneal == 'linear' else 'cos')
    it = np.arange(total_steps)  # torch refuses to step past total_steps, so the comparison ends at the last step
    assert max_rel_err(s(it), t_lr) < RTOL
    assert max_rel_err(s.mom(it), t_mom) < RTOL
    # past the end cyclr holds the final value (torch raises instead)
    assert s(total_steps) == s(total_steps + 1000) == s(total_steps - 1)
    assert math.isclose(s(total_steps - 1), lr_max / (div * final_div), rel_tol=1e-12)


def fastai_sched_cos(start, end, pos):
    "fastai's `sched_cos`."
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def fastai_combined_cos(pct, start, middle, end):
    "fastai's `combined_cos`: `combine_scheds([pct, 1-pct], [SchedCos(start, middle), SchedCos(middle, end)])`."
    edges = [0., pct, 1.]
    def _inner(pos):
        idx = min(max(k for k, e in enumerate(edges) if pos >= e), len(edges) - 2)  # fastai's piece rule
        return fastai_sched_cos([start, middle][idx], [middle, end][idx], (pos - edges[idx]) / (edges[idx + 1] - edges[idx]))
    return _inner


@pytest.mark.parametrize('total_steps,pct_start,div,div_final', [(1000, 0.25, 25., 1e5), (3000, 0.3, 10., 1e4),
                                                                 (997, 0.1, 25., 1e5), (50, 0.5, 5., 20.)])
def test_two_phase_one_cycle_is_fastais(total_steps, pct_start, div, div_final):
    lr_max = 3e-3
    s = one_cycle(lr_max, total_steps, pct_start=pct_start, div=div, div_final=div_final)
    f_lr = fastai_combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
    f_mom = fastai_combined_cos(pct_start, 0.95, 0.85, 0.95)
    it = np.arange(total_steps + 1)
    pos = it / total_steps
    assert max_rel_err(s(it), [f_lr(p) for p in pos]) < 1e-10
    assert max_rel_err(s.mom(it), [f_mom(p) for p in pos]) < 1e-12
    # momentum is the mirror image of the LR in each phase
    warm = it[it < pct_start * total_steps]
    np.testing.assert_allclose((0.95 - s.mom(warm)) / (0.95 - 0.85), (s(warm) - lr_max / div) / (lr_max - lr_max / div),
                               rtol=1e-9, atol=1e-12)
    # special points and the hold past the end
    assert s(0) == lr_max / div and s.mom(0) == 0.95
    assert math.isclose(s(total_steps), lr_max / div_final, rel_tol=1e-12) and s.mom(total_steps) == 0.95
    assert s(total_steps + 10**6) == s(total_steps)


def test_one_cycle_defaults_are_the_specs():
    s = one_cycle(1e-2, 1000)
    assert s.params['div'] == 25. and s.params['div_final'] == 1e5 and s.params['pct_start'] == 0.25
    assert s.params['moms'] == (0.95, 0.85, 0.95)
    assert s(0) == 1e-2 / 25 and s(250) == 1e-2 and math.isclose(s(1000), 1e-2 / 1e5)
    assert one_cycle(1e-2, 1000, moms=None).mom(3) is None


def test_three_phase_degenerate_first_phase_is_rejected_or_finite():
    # pct_start*total_steps == 1 makes torch's first phase 0 steps long (0/0); cyclr must not hand out NaN
    try:
        s = one_cycle(1e-2, 4, pct_start=0.25, three_phase=True)
    except ValueError as e:
        assert '`pct_start`' in str(e) or '`total_steps`' in str(e)
        return
    with np.errstate(all='ignore'):
        values, moms = s(np.arange(6)), s.mom(np.arange(6))
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(moms)), f"NaN in the schedule: {values}, {moms}"


# ---------------------------------------------------------------------------------------------
# CosineAnnealingLR, CosineAnnealingWarmRestarts, StepLR, MultiStepLR

@pytest.mark.parametrize('T_max,eta_min', [(3000, 0.), (5000, 0.), (3000, 1e-4), (777, 1e-6)])
def test_cosine_matches_torch_cosineannealinglr(T_max, eta_min):
    lr_max = 0.1
    t_lr, _ = torch_trace(lambda o: tls.CosineAnnealingLR(o, T_max, eta_min=eta_min), T_max + 1, lr=lr_max)
    s = cosine(lr_max, T_max, eta_min=eta_min)
    it = np.arange(T_max + 1)
    # torch uses a recursive (chainable) form, cyclr the closed form. With eta_min=0 the LR approaches 0 near
    # T_max and both lose relative precision there (measured: < 2e-10 at T_max=5000), still inside 1e-9.
    assert max_rel_err(s(it), t_lr) < RTOL
    # an independent, cancellation-free closed form: (1+cos(pi t/T))/2 = cos(pi t/(2T))**2
    stable = eta_min + (lr_max - eta_min) * np.cos(np.pi * it / (2 * T_max)) ** 2
    assert max_rel_err(s(it)[:-1], stable[:-1]) < RTOL
    assert s(T_max) == eta_min and s(T_max + 123) == eta_min  # torch's LR rises again after T_max; cyclr holds


SGDR_CASES = [(1, 1, 0.), (10, 1, 1e-4), (37, 1, 0.), (1, 2, 0.), (10, 2, 1e-4), (37, 2, 0.), (250, 2, 1e-3),
              (1, 3, 0.), (5, 3, 1e-5), (40, 3, 0.)]


@pytest.mark.parametrize('T_0,T_mult,eta_min', SGDR_CASES)
def test_sgdr_matches_torch_cosineannealingwarmrestarts(T_0, T_mult, eta_min):
    n, lr_max = 4000, 0.1
    t_lr, _ = torch_trace(lambda o: tls.CosineAnnealingWarmRestarts(o, T_0, T_mult=T_mult, eta_min=eta_min), n, lr=lr_max)
    s = sgdr(lr_max, T_0, T_mult=T_mult, eta_min=eta_min)
    assert max_rel_err(s(np.arange(n)), t_lr) < RTOL


@pytest.mark.parametrize('step_size,gamma', [(300, 0.5), (1, 0.999), (77, 0.1)])
def test_step_decay_matches_torch_steplr(step_size, gamma):
    n = 3000
    t_lr, _ = torch_trace(lambda o: tls.StepLR(o, step_size, gamma=gamma), n)
    s = step_decay(0.1, step_size=step_size, gamma=gamma)
    # torch multiplies by gamma step after step: rounding grows with the number of decays (3000 at most here)
    assert max_rel_err(s(np.arange(n)), t_lr) < RTOL


@pytest.mark.parametrize('milestones,gamma', [([100, 750, 751, 2000], 0.3), ([2000, 100, 750, 2000], 0.5), ([0, 5], 0.1)])
def test_step_decay_matches_torch_multisteplr(milestones, gamma):
    n = 2500
    t_lr, _ = torch_trace(lambda o: tls.MultiStepLR(o, milestones, gamma=gamma), n)
    s = step_decay(0.1, milestones=milestones, gamma=gamma)   # unsorted and repeated milestones count like torch's
    assert max_rel_err(s(np.arange(n)), t_lr) < RTOL


# ---------------------------------------------------------------------------------------------
# SGDR restarts and decay at special points

def test_sgdr_restart_points_and_decay():
    s = sgdr(0.1, 10, T_mult=2, eta_min=1e-3, decay=0.5)
    for n, start in enumerate([0, 10, 30, 70, 150]):
        assert math.isclose(s(start), 0.1 * 0.5 ** n, rel_tol=1e-14)
        length = 10 * 2 ** n
        assert math.isclose(s(start + length / 2), (0.1 * 0.5 ** n + 1e-3) / 2, rel_tol=1e-13)
    assert s.total_steps is None


def test_sgdr_n_cycles_then_holds_eta_min():
    s = sgdr(0.1, 10, T_mult=2, eta_min=1e-3, n_cycles=3)
    assert s.total_steps == 70
    assert s(69) > 1e-3 and s(70) == 1e-3 and s(10**6) == 1e-3
    s = sgdr(0.1, 10, T_mult=1.5, n_cycles=3)          # 10 + 15 + 22.5 = 47.5, rounded
    assert s.total_steps == round(47.5) and s(s.total_steps) == 0.


@pytest.mark.parametrize('T_0,T_mult', [(5, 1.2), (10, 1.2), (10, 1.1), (20, 1.05), (4, 1.5), (10, 2.5)])
def test_sgdr_float_t_mult_restarts_at_the_decimal_boundaries(T_0, T_mult):
    "Period n starts at T_0*(1 + T_mult + ... + T_mult**(n-1)) read as decimals: T_0=10, T_mult=1.2 restarts at 10, 22, 36.4, ..."
    lr_max, eta_min = 1.0, 0.
    s = sgdr(lr_max, T_0, T_mult=T_mult, eta_min=eta_min)
    q = Fraction(str(T_mult))   # the decimal the user wrote
    start, length, expected = Fraction(0), Fraction(T_0), {}
    while start < 2000:
        for i in range(math.ceil(start), math.ceil(start + length)):
            t = (Fraction(i) - start) / length
            expected[i] = eta_min + (lr_max - eta_min) * (1 + math.cos(math.pi * float(t))) / 2
        start, length = start + length, length * q
    it = np.array(sorted(expected))
    got = s(it)
    want = np.array([expected[i] for i in it])
    bad = np.flatnonzero(np.abs(got - want) > 1e-9 * lr_max)
    assert bad.size == 0, f"steps {it[bad][:5]}: got {got[bad][:5]}, want {want[bad][:5]}"


# ---------------------------------------------------------------------------------------------
# warmup, flat_cos, step_decay, constant, combine_scheds, annealers: formulas at special points

@pytest.mark.parametrize('start_factor', [0., 0.1, 1.])
def test_warmup_in_front_of_cosine(start_factor):
    inner, w = cosine(0.1, 100, eta_min=1e-3), 10
    s = warmup(inner, w, start_factor=start_factor)
    it = np.arange(140)
    expected = np.where(it < w, 0.1 * (start_factor + (1 - start_factor) * it / w), inner(np.maximum(it - w, 0)))
    np.testing.assert_allclose(s(it), expected, rtol=1e-14, atol=0)
    assert s(0) == 0.1 * start_factor and s(w) == 0.1 and s(w + 50) == inner(50)
    assert math.isclose(s(w // 2), 0.1 * (start_factor + (1 - start_factor) / 2), rel_tol=1e-14)
    assert s.total_steps == 110 and s(110) == s(10**6) == 1e-3
    assert not s.has_mom


def test_warmup_holds_momentum_then_follows_the_inner_schedule():
    inner = one_cycle(1e-2, 200)
    s = warmup(inner, 20)
    assert s.has_mom
    np.testing.assert_array_equal(s.mom(np.arange(20)), np.full(20, 0.95))
    np.testing.assert_array_equal(s.mom(np.arange(20, 230)), inner.mom(np.arange(0, 210)))
    np.testing.assert_array_equal(s(np.arange(20, 230)), inner(np.arange(0, 210)))


def test_warmup_of_endless_schedule_stays_endless():
    s = warmup(sgdr(0.1, 10), 5)
    assert s.total_steps is None
    assert s(5) == 0.1 and s(15) == 0.1 and math.isclose(s(10), 0.05, rel_tol=1e-14)


@pytest.mark.parametrize('total_steps,pct_start,div_final', [(100, 0.75, 1e5), (1000, 0.5, 10.), (333, 0.72, 1e3)])
def test_flat_cos(total_steps, pct_start, div_final):
    lr_max = 1e-2
    s = flat_cos(lr_max, total_steps, pct_start=pct_start, div_final=div_final)
    it = np.arange(total_steps + 1)
    flat = it < pct_start * total_steps
    assert np.all(s(it[flat]) == lr_max)
    f = fastai_combined_cos(pct_start, lr_max, lr_max, lr_max / div_final)   # fastai: SchedNo then SchedCos
    assert max_rel_err(s(it), [f(i / total_steps) for i in it]) < 1e-10
    mid = (pct_start + (1 - pct_start) / 2) * total_steps
    assert math.isclose(s(mid), (lr_max + lr_max / div_final) / 2, rel_tol=1e-12)
    assert math.isclose(s(total_steps), lr_max / div_final, rel_tol=1e-12) and s(total_steps * 3) == s(total_steps)
    assert not s.has_mom


def test_step_decay_special_points():
    s = step_decay(0.1, step_size=30, gamma=0.1)
    assert s(0) == s(29) == 0.1
    for k in range(1, 5):
        assert math.isclose(s(30 * k), 0.1 * 0.1 ** k, rel_tol=1e-14) and s(30 * k) == s(30 * k + 29)
    m = step_decay(0.1, milestones=[10, 25], gamma=0.5, total_steps=40)
    np.testing.assert_allclose(m(np.array([0, 9, 10, 24, 25, 39, 40, 1000])), [0.1, 0.1, .05, .05, .025, .025, .025, .025],
                               rtol=1e-15)


def test_constant():
    s = constant(3e-3)
    assert s(0) == s(10**9) == 3e-3 and s.total_steps is None and not s.has_mom
    np.testing.assert_array_equal(s(np.arange(12).reshape(3, 4)), np.full((3, 4), 3e-3))
    assert constant(3e-3, total_steps=10)(50) == 3e-3


def test_combine_scheds_special_points():
    a, b, c = 1., 3., 2.
    for f in [combine_scheds([0.3, 0.7], [SchedLin(a, b), SchedCos(b, c)]),             # mixed kinds
              combine_scheds([0.3, 0.7], [SchedCos(a, b), SchedCos(b, c)])]:            # one kind (vectorised path)
        assert f(0.) == a and f(0.3) == b and f(1.) == c
        assert math.isclose(f(0.15), (a + b) / 2) and math.isclose(f(0.65), (b + c) / 2)
        assert f(-1.) == a and f(2.) == c   # clipped to [0, 1]
    # three pieces; each piece sees its own pos in [0, 1] (fastai's rule)
    g = combine_scheds([0.2, 0.5, 0.3], [SchedNo(1.), SchedLin(1., 0.), SchedExp(1e-3, 1e-1)])
    np.testing.assert_allclose(g(np.array([0., 0.1, 0.2, 0.45, 0.7, 0.85, 1.])), [1, 1, 1, 0.5, 1e-3, 1e-2, 1e-1], rtol=1e-12)


def test_annealers_special_points():
    p = np.array([0., 0.25, 0.5, 1.])
    np.testing.assert_allclose(SchedLin(2., 0.)(p), [2, 1.5, 1, 0])
    np.testing.assert_allclose(SchedCos(2., 0.)(p), [2, 1 + math.sqrt(2) / 2, 1, 0])   # cos(pi/4) at the quarter
    np.testing.assert_allclose(SchedExp(1e-4, 1e-2)(p), [1e-4, 10 ** -3.5, 1e-3, 1e-2])
    np.testing.assert_allclose(SchedPoly(1., 0., 2.)(p), [1, 1 - 1 / 16, 3 / 4, 0])
    assert SchedNo(5.)(p).tolist() == [5.] * 4
    assert isinstance(SchedCos(1., 0.)(torch.tensor([0.5], dtype=torch.float32)), torch.Tensor)
    assert isinstance(SchedCos(1., 0.)(0.5), float)


# ---------------------------------------------------------------------------------------------
# to_torch: a real training loop

def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def batches(n, seed=123):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)]


def make_opt(model, kind):
    groups = [{'params': model[0].parameters()}, {'params': model[2].parameters()}]
    if kind == 'sgd': return torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    return torch.optim.Adam(groups, lr=1e-3, betas=(0.9, 0.99))


def mom_of(group):
    return group['betas'][0] if 'betas' in group else group['momentum']


def train(model, opt, sched, data, log=None):
    for xb, yb in data:
        if log is not None: log.append([g['lr'] for g in opt.param_groups] + [mom_of(g) for g in opt.param_groups])
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize('kind', ['sgd', 'adam'])
@pytest.mark.parametrize('make_schedule', [lambda: one_cycle(1e-2, 50, pct_start=0.3),
                                           lambda: cyclic(1e-4, 1e-2, step_size=7, step_size_down=5, moms=(0.95, 0.8)),
                                           lambda: warmup(sgdr(1e-2, 9, T_mult=2, eta_min=1e-4), 6)],
                         ids=['one_cycle', 'cyclic', 'warmup_sgdr'])
def test_to_torch_drives_every_group_and_momentum(kind, make_schedule):
    model, s, mults = tiny_model(), make_schedule(), [0.1, 1.0]
    opt = make_opt(model, kind)
    sched = s.to_torch(opt, group_mults=mults)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler) and isinstance(sched, ScheduleLR)
    log = []
    train(model, opt, sched, batches(60), log)   # 60 > 50: also runs past the end of one_cycle
    for step, row in enumerate(log):
        assert row[:2] == [s(step) * m for m in mults]
        if s.has_mom: assert row[2:] == [s.mom(step)] * 2
        else: assert row[2:] == [0.9, 0.9]      # left alone
    if kind == 'adam':
        assert all(g['betas'][1] == 0.99 for g in opt.param_groups)   # beta2 untouched


def test_to_torch_defaults_to_one_multiplier_per_group():
    model = tiny_model()
    opt = make_opt(model, 'sgd')
    s = cosine(0.05, 20)
    sched = s.to_torch(opt)
    for step in range(25):
        assert [g['lr'] for g in opt.param_groups] == [s(step)] * 2
        opt.step(); sched.step()
    assert sched.get_last_lr() == [s(25)] * 2


@pytest.mark.parametrize('kind', ['sgd', 'adam'])
def test_to_torch_resume_from_state_dict_is_exact(kind, tmp_path):
    data = batches(60)
    make_sched = lambda opt: one_cycle(5e-2, 60, pct_start=0.3).to_torch(opt, group_mults=[0.5, 1.0])

    # uninterrupted 60 steps
    full = tiny_model(0)
    full_opt = make_opt(full, kind)
    log_full = []
    train(full, full_opt, make_sched(full_opt), data, log_full)

    # 30 steps, save everything through torch.save, fresh objects (another init), load, 30 more
    model = tiny_model(0)
    opt = make_opt(model, kind)
    sched = make_sched(opt)
    log_resumed = []
    train(model, opt, sched, data[:30], log_resumed)
    torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'sched': sched.state_dict()}, tmp_path / 'ckpt.pt')
    del model, opt, sched
    ckpt = torch.load(tmp_path / 'ckpt.pt')    # weights_only=True by default: the state must be plain data
    model = tiny_model(1)
    opt = make_opt(model, kind)
    sched = make_sched(opt)
    model.load_state_dict(ckpt['model'])
    opt.load_state_dict(ckpt['opt'])
    sched.load_state_dict(ckpt['sched'])
    train(model, opt, sched, data[30:], log_resumed)

    assert log_resumed == log_full          # every group's LR and momentum, step for step
    for a, b in zip(model.parameters(), full.parameters()):
        assert torch.equal(a, b)            # bit-identical weights


def test_to_torch_load_state_dict_in_either_order():
    # loading the scheduler before the optimizer must not matter for the LR the next step uses
    model = tiny_model()
    opt = make_opt(model, 'sgd')
    s = one_cycle(1e-2, 40)
    sched = s.to_torch(opt, group_mults=[0.2, 1.])
    train(model, opt, sched, batches(17))
    sd_s, sd_o = sched.state_dict(), opt.state_dict()
    opt2 = make_opt(tiny_model(), 'sgd')
    sched2 = s.to_torch(opt2, group_mults=[0.2, 1.])
    sched2.load_state_dict(sd_s)
    assert [g['lr'] for g in opt2.param_groups] == [s(17) * 0.2, s(17)]
    assert [g['momentum'] for g in opt2.param_groups] == [s.mom(17)] * 2
    opt2.load_state_dict(sd_o)
    assert [g['lr'] for g in opt2.param_groups] == [s(17) * 0.2, s(17)]
    assert sched2.last_epoch == 17


def test_to_torch_state_dict_is_picklable_plain_data():
    opt = make_opt(tiny_model(), 'sgd')
    sched = one_cycle(1e-2, 40).to_torch(opt)
    for _ in range(3): opt.step(); sched.step()
    sd = sched.state_dict()
    assert pickle.loads(pickle.dumps(sd)) == sd
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True) == sd
    assert sd['last_epoch'] == 3


@pytest.mark.parametrize('mults', [[1.0], [1.0, 1.0, 1.0], []])
def test_to_torch_group_mults_wrong_length_and_no_half_applied_state(mults):
    opt = make_opt(tiny_model(), 'sgd')
    before = [dict(g, params=None) for g in opt.param_groups]
    with pytest.raises(ValueError, match='`group_mults`'):
        one_cycle(1e-2, 10).to_torch(opt, group_mults=mults)
    assert [dict(g, params=None) for g in opt.param_groups] == before   # no lr/momentum/initial_lr written


@pytest.mark.parametrize('mults', [[1.0, -1.0], [1.0, float('nan')], [0., 1.]])
def test_to_torch_group_mults_out_of_range(mults):
    opt = make_opt(tiny_model(), 'sgd')
    with pytest.raises(ValueError, match='`group_mults`'):
        one_cycle(1e-2, 10).to_torch(opt, group_mults=mults)


def test_schedule_lr_rejects_a_non_schedule():
    opt = make_opt(tiny_model(), 'sgd')
    with pytest.raises(TypeError, match='`schedule`'):
        ScheduleLR(opt, lambda it: 0.1)


# ---------------------------------------------------------------------------------------------
# Bad input (SPEC section 8): every row raises, and the message names the parameter in backticks.
# cyclr.checks' policy: a float where an integer is wanted (2.5, inf, nan) is the wrong kind: TypeError

nan, inf = float('nan'), float('inf')
_cos100 = lambda: cosine(0.1, 100)

BAD_CALLS = [
    # cyclic
    (lambda: cyclic(0., 1e-2), ValueError, 'base_lr'),
    (lambda: cyclic(-1e-3, 1e-2), ValueError, 'base_lr'),
    (lambda: cyclic(nan, 1e-2), ValueError, 'base_lr'),
    (lambda: cyclic(1e-3, nan), ValueError, 'max_lr'),
    (lambda: cyclic(1e-3, inf), ValueError, 'max_lr'),
    (lambda: cyclic(1e-2, 1e-3), ValueError, 'base_lr'),
    (lambda: cyclic(1e-3, 1e-2, step_size=0), ValueError, 'step_size'),
    (lambda: cyclic(1e-3, 1e-2, step_size=-5), ValueError, 'step_size'),
    (lambda: cyclic(1e-3, 1e-2, step_size=2.5), TypeError, 'step_size'),
    (lambda: cyclic(1e-3, 1e-2, step_size=inf), TypeError, 'step_size'),
    (lambda: cyclic(1e-3, 1e-2, step_size_down=0), ValueError, 'step_size_down'),
    (lambda: cyclic(1e-3, 1e-2, mode='exp_range', gamma=0.), ValueError, 'gamma'),
    (lambda: cyclic(1e-3, 1e-2, mode='exp_range', gamma=-0.5), ValueError, 'gamma'),
    (lambda: cyclic(1e-3, 1e-2, mode='exp_range', gamma=1.5), ValueError, 'gamma'),
    (lambda: cyclic(1e-3, 1e-2, mode='exp_range', gamma=nan), ValueError, 'gamma'),
    (lambda: cyclic(1e-3, 1e-2, mode='triangle'), ValueError, 'mode'),
    (lambda: cyclic('1e-3', 1e-2), TypeError, 'base_lr'),
    (lambda: cyclic(1e-3, None), TypeError, 'max_lr'),
    (lambda: cyclic(1e-3, 1e-2, step_size='100'), TypeError, 'step_size'),
    (lambda: cyclic(1e-3, 1e-2, step_size=True), TypeError, 'step_size'),
    (lambda: cyclic(1e-3, 1e-2, moms=(0.9,)), ValueError, 'moms'),
    (lambda: cyclic(1e-3, 1e-2, moms=(0.95, 0.85, 0.9)), ValueError, 'moms'),
    (lambda: cyclic(1e-3, 1e-2, moms=(0.95, 1.5)), ValueError, 'moms'),
    (lambda: cyclic(1e-3, 1e-2, moms=(-0.1, 0.8)), ValueError, 'moms'),
    (lambda: cyclic(1e-3, 1e-2, moms=0.9), (TypeError, ValueError), 'moms'),
    (lambda: cyclic(1e-3, 1e-2, scale_fn=3), TypeError, 'scale_fn'),
    (lambda: cyclic(1e-3, 1e-2, scale_fn=lambda c: 1., scale_mode='epoch'), ValueError, 'scale_mode'),
    (lambda: cyclic(1e-3, 1e-2, total_steps=0), ValueError, 'total_steps'),
    # one_cycle
    (lambda: one_cycle(0., 100), ValueError, 'lr_max'),
    (lambda: one_cycle(-1e-2, 100), ValueError, 'lr_max'),
    (lambda: one_cycle(nan, 100), ValueError, 'lr_max'),
    (lambda: one_cycle(inf, 100), ValueError, 'lr_max'),
    (lambda: one_cycle('0.01', 100), TypeError, 'lr_max'),
    (lambda: one_cycle(True, 100), TypeError, 'lr_max'),
    (lambda: one_cycle(1e-2, 0), ValueError, 'total_steps'),
    (lambda: one_cycle(1e-2, 100.5), TypeError, 'total_steps'),
    (lambda: one_cycle(1e-2, None), TypeError, 'total_steps'),
    (lambda: one_cycle(1e-2, inf), TypeError, 'total_steps'),
    (lambda: one_cycle(1e-2, nan), TypeError, 'total_steps'),
    (lambda: one_cycle(1e-2, 100, pct_start=0.), ValueError, 'pct_start'),
    (lambda: one_cycle(1e-2, 100, pct_start=1.), ValueError, 'pct_start'),
    (lambda: one_cycle(1e-2, 100, pct_start=1.5), ValueError, 'pct_start'),
    (lambda: one_cycle(1e-2, 100, pct_start=-0.1), ValueError, 'pct_start'),
    (lambda: one_cycle(1e-2, 100, pct_start=nan), ValueError, 'pct_start'),
    (lambda: one_cycle(1e-2, 100, pct_start=0.5, three_phase=True), ValueError, 'pct_start'),
    (lambda: one_cycle(1e-2, 100, div=0.), ValueError, 'div'),
    (lambda: one_cycle(1e-2, 100, div=-25.), ValueError, 'div'),
    (lambda: one_cycle(1e-2, 100, div_final=0.), ValueError, 'div_final'),
    (lambda: one_cycle(1e-2, 100, div_final=-1.), ValueError, 'div_final'),
    (lambda: one_cycle(1e-2, 100, moms=(0.95, 0.85)), ValueError, 'moms'),
    (lambda: one_cycle(1e-2, 100, moms=(0.95, 1.2, 0.95)), ValueError, 'moms'),
    (lambda: one_cycle(1e-2, 100, moms=(0.95, -0.1, 0.95)), ValueError, 'moms'),
    (lambda: one_cycle(1e-2, 100, moms=(0.95, nan, 0.95)), ValueError, 'moms'),
    (lambda: one_cycle(1e-2, 100, anneal='cosine'), ValueError, 'anneal'),
    # cosine, sgdr
    (lambda: cosine(-0.1, 100), ValueError, 'lr_max'),
    (lambda: cosine(0.1, 0), ValueError, 'total_steps'),
    (lambda: cosine(0.1, 100, eta_min=0.2), ValueError, 'eta_min'),
    (lambda: cosine(0.1, 100, eta_min=-1e-3), ValueError, 'eta_min'),
    (lambda: sgdr(inf, 10), ValueError, 'lr_max'),
    (lambda: sgdr(0.1, 0), ValueError, 'T_0'),
    (lambda: sgdr(0.1, -10), ValueError, 'T_0'),
    (lambda: sgdr(0.1, 2.5), TypeError, 'T_0'),
    (lambda: sgdr(0.1, '10'), TypeError, 'T_0'),
    (lambda: sgdr(0.1, nan), TypeError, 'T_0'),
    (lambda: sgdr(0.1, 10, T_mult=0.5), ValueError, 'T_mult'),
    (lambda: sgdr(0.1, 10, T_mult=0), ValueError, 'T_mult'),
    (lambda: sgdr(0.1, 10, T_mult=nan), ValueError, 'T_mult'),
    (lambda: sgdr(0.1, 10, T_mult='2'), TypeError, 'T_mult'),
    (lambda: sgdr(0.1, 10, eta_min=0.2), ValueError, 'eta_min'),
    (lambda: sgdr(0.1, 10, eta_min=-1.), ValueError, 'eta_min'),
    (lambda: sgdr(0.1, 10, decay=0.), ValueError, 'decay'),
    (lambda: sgdr(0.1, 10, decay=1.5), ValueError, 'decay'),
    (lambda: sgdr(0.1, 10, n_cycles=0), ValueError, 'n_cycles'),
    # step_decay, constant
    (lambda: step_decay(0.1), ValueError, 'step_size'),
    (lambda: step_decay(0.1, step_size=10, milestones=[5]), ValueError, 'milestones'),
    (lambda: step_decay(0.1, step_size=0), ValueError, 'step_size'),
    (lambda: step_decay(0.1, step_size=10, gamma=0.), ValueError, 'gamma'),
    (lambda: step_decay(0.1, step_size=10, gamma=-0.5), ValueError, 'gamma'),
    (lambda: step_decay(0.1, milestones=[10, -5]), ValueError, 'milestones'),
    (lambda: step_decay(0.1, milestones=[2.5]), TypeError, 'milestones'),
    (lambda: step_decay(0.1, milestones=10), (TypeError, ValueError), 'milestones'),
    (lambda: step_decay(0., step_size=10), ValueError, 'lr'),
    (lambda: constant(0.), ValueError, 'lr'),
    (lambda: constant(nan), ValueError, 'lr'),
    (lambda: constant(0.1, total_steps=0), ValueError, 'total_steps'),
    # warmup, flat_cos
    (lambda: warmup(lambda it: 0.1, 10), TypeError, 'schedule'),
    (lambda: warmup(SchedCos(0.1, 0.), 10), TypeError, 'schedule'),
    (lambda: warmup(_cos100(), 0), ValueError, 'warmup_steps'),
    (lambda: warmup(_cos100(), -3), ValueError, 'warmup_steps'),
    (lambda: warmup(_cos100(), 2.5), TypeError, 'warmup_steps'),
    (lambda: warmup(_cos100(), 10, start_factor=1.5), ValueError, 'start_factor'),
    (lambda: flat_cos(0.1, 100, pct_start=1.), ValueError, 'pct_start'),
    (lambda: flat_cos(0.1, 100, div_final=0.), ValueError, 'div_final'),
    (lambda: flat_cos(0.1, 0), ValueError, 'total_steps'),
    # combine_scheds, annealers
    (lambda: combine_scheds([0.5, 0.6], [SchedLin(0, 1), SchedLin(1, 0)]), ValueError, 'pcts'),
    (lambda: combine_scheds([1.], [SchedLin(0, 1), SchedLin(1, 0)]), ValueError, 'pcts'),
    (lambda: combine_scheds([1.5, -0.5], [SchedLin(0, 1), SchedLin(1, 0)]), ValueError, 'pcts'),
    (lambda: combine_scheds([], []), ValueError, 'pcts'),
    (lambda: SchedExp(0., 1.), ValueError, 'start'),
    (lambda: SchedExp(1., -1.), ValueError, 'end'),
    (lambda: SchedPoly(1., 0., power=0.), ValueError, 'power'),
]


def _bad_id(i, row):
    return f'{i:02d}-{row[2]}'


@pytest.mark.parametrize('call,exc,name', [pytest.param(*row, id=_bad_id(i, row)) for i, row in enumerate(BAD_CALLS)])
def test_bad_input_names_the_parameter(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    assert f'`{name}`' in str(info.value), f"message does not name `{name}`: {info.value}"


def test_bad_input_table_is_big_enough():
    assert len(BAD_CALLS) >= 30


def _call_sites():
    s = one_cycle(1e-2, 100)
    return {'__call__': s, 'mom': s.mom}


@pytest.mark.parametrize('method,it', [('__call__', -1), ('__call__', np.array([[0, 5], [-1, 2]])),
                                       ('__call__', torch.tensor([-3])), ('mom', -0.5)],
                         ids=['int', 'ndarray', 'tensor', 'mom'])
def test_negative_iteration_numbers_are_rejected_by_name(method, it):
    fn = _call_sites()[method]
    with pytest.raises(ValueError) as info:
        fn(it)
    assert '`it`' in str(info.value), f"message does not name `it`: {info.value}"


@pytest.mark.parametrize('it', [float('nan'), np.array([0., float('nan')])], ids=['nan', 'nan-array'])
def test_nan_iteration_numbers_are_rejected(it):
    s = cyclic(1e-3, 1e-2, step_size=10)   # endless: NaN would flow straight into the LR
    with pytest.raises(ValueError, match='`it`'):
        s(it)


def test_string_iteration_numbers_are_rejected():
    with pytest.raises(TypeError, match='`it`'):
        cosine(0.1, 100)('5')


# ---------------------------------------------------------------------------------------------
# Purity: calls change nothing

def all_policies():
    return [cyclic(1e-3, 6e-3, 50, mode='triangular2', moms=(0.95, 0.85)), one_cycle(1e-2, 300),
            one_cycle(1e-2, 300, three_phase=True), cosine(0.1, 300, 1e-3), sgdr(0.1, 20, T_mult=2, decay=0.7),
            step_decay(0.1, step_size=40), step_decay(0.1, milestones=[30, 90]), constant(0.01),
            warmup(one_cycle(1e-2, 200), 20), flat_cos(1e-2, 300)]


@pytest.mark.parametrize('s', all_policies(), ids=lambda s: s.name)
def test_calls_are_pure(s):
    assert isinstance(s, Schedule)
    it = np.arange(0., 400.)
    it_before = it.copy()
    rep, params = repr(s), dict(s.params)
    first = s(it)
    first_mom = s.mom(it) if s.has_mom else None
    np.testing.assert_array_equal(it, it_before)      # the input array is not modified
    scalars = np.array([s(int(i)) for i in it])
    np.testing.assert_array_equal(first, scalars)     # array then scalars: the same values
    if s.has_mom:
        np.testing.assert_array_equal(first_mom, [s.mom(int(i)) for i in it])
    first[:] = -1.                                     # the result is the caller's to change
    np.testing.assert_array_equal(s(it), scalars)
    np.testing.assert_array_equal(s(torch.arange(400)).numpy(), scalars)
    assert repr(s) == rep and s.params == params


@pytest.mark.parametrize('s', [cosine(0.1, 10_000), one_cycle(1e-2, 10_000), sgdr(0.1, 3000, T_mult=2)], ids=lambda s: s.name)
def test_long_arrays_give_the_scalar_values(s):
    # a schedule is a function of the step: the value at step i must not depend on how many steps were asked for
    it = np.arange(9000)
    values = s(it)
    scalars = np.array([s(int(i)) for i in it])
    diff = np.flatnonzero(values != scalars)
    assert diff.size == 0, f"{diff.size} steps differ, e.g. step {diff[0]}: {values[diff[0]]!r} vs {scalars[diff[0]]!r}"


def test_sgdr_decayed_peak_never_drops_below_eta_min():
    # with decay < 1 the peak lr_max*decay**n falls under eta_min after a few restarts; the period would then
    # *rise* from that peak to eta_min, which no reading of "cosine from the peak down to eta_min" allows
    s = sgdr(1.0, 10, eta_min=0.1, decay=0.5)
    values = s(np.arange(200))
    assert values.min() >= 0.1, f"LR {values.min()!r} < eta_min at step {int(np.argmin(values))}"


def test_triangular2_far_into_training_is_quiet_and_exact():
    # 2.**(cycle-1) overflows after 1024 cycles; the amplitude is then 0 and the LR base_lr, without a warning
    import warnings
    s = cyclic(1e-3, 1e-2, step_size=1, mode='triangular2')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert s(np.array([5000.]))[0] == 1e-3 and s(5001) == 1e-3


# ---------------------------------------------------------------------------------------------
# Per-group schedules and the torch adapter's refusals

def _two_group_sgd(momentum=0.9):
    m = torch.nn.Linear(3, 2)
    return torch.optim.SGD([{'params': m.weight}, {'params': m.bias}], lr=0.1, momentum=momentum)


def test_per_group_schedule_drives_each_group_by_its_column_like_torch_onecycle():
    lrs = np.array([1e-3, 1e-2])
    opt, ref = _two_group_sgd(), _two_group_sgd()
    ours = one_cycle(lrs, 50, pct_start=0.3, div=25, div_final=25e4, three_phase=True).to_torch(opt)
    theirs = torch.optim.lr_scheduler.OneCycleLR(ref, max_lr=list(lrs), total_steps=50, pct_start=0.3, div_factor=25,
                                                 final_div_factor=1e4, three_phase=True, anneal_strategy='linear')
    for _ in range(49):
        np.testing.assert_allclose([g['lr'] for g in opt.param_groups], [g['lr'] for g in ref.param_groups], rtol=1e-12)
        np.testing.assert_allclose([g['momentum'] for g in opt.param_groups], [g['momentum'] for g in ref.param_groups], rtol=1e-12)
        opt.step(); ref.step(); ours.step(); theirs.step()


def test_per_group_schedule_must_match_the_param_groups():
    with pytest.raises(ValueError, match='3 layer groups but the optimizer has 2 param groups'):
        cosine(np.ones(3) * 1e-2, 10).to_torch(_two_group_sgd())
    with pytest.raises(ValueError, match='`group_mults` must be None'):
        cosine(np.ones(2) * 1e-2, 10).to_torch(_two_group_sgd(), group_mults=[1., 2.])


def test_load_state_dict_refuses_another_schedules_state():
    opt = _two_group_sgd()
    state = one_cycle(1e-2, 100).to_torch(opt).state_dict()
    with pytest.raises(ValueError, match=r'different schedule: saved one_cycle\(lr_max=0.01.*runs one_cycle\(lr_max=0.02'):
        one_cycle(2e-2, 100).to_torch(opt).load_state_dict(state)
    one_cycle(1e-2, 100).to_torch(opt).load_state_dict(state)  # the same schedule: fine


@pytest.mark.parametrize('opt_cls', [torch.optim.Rprop, torch.optim.Adagrad])
def test_momentum_cycling_without_momentum_names_the_fix(opt_cls):
    opt = opt_cls(torch.nn.Linear(3, 2).parameters(), lr=0.01)
    with pytest.raises(ValueError, match='moms=None'): one_cycle(1e-2, 20).to_torch(opt)
    one_cycle(1e-2, 20, moms=None).to_torch(opt)


def test_tensor_lrs_stay_tensors_like_torch():
    "Capturable optimizers hold group['lr'] as a tensor: stepping and resuming fill it in place, as torch's schedulers do."
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters(), lr=torch.tensor(0.01))
    lr_tensor = opt.param_groups[0]['lr']
    s = one_cycle(1e-2, 20)
    ts = s.to_torch(opt)
    for _ in range(5): opt.step(); ts.step()
    assert opt.param_groups[0]['lr'] is lr_tensor and math.isclose(lr_tensor.item(), s(5), rel_tol=1e-6)
    state = ts.state_dict()
    ts2 = s.to_torch(opt)
    ts2.load_state_dict(state)
    assert opt.param_groups[0]['lr'] is lr_tensor and math.isclose(lr_tensor.item(), s(5), rel_tol=1e-6)
    assert opt.param_groups[0]['betas'][0] == s.mom(5)
