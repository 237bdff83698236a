"""Tests of the Learner's fit policies: recorded LRs and momentums against cyclr.schedules, torch's schedulers and the formulas."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from cyclr.data import digits
from cyclr.discriminative import norm_params, split_by_children, spread_lrs
from cyclr.callback import Callback
from cyclr.learner import Learner
from cyclr.schedules import cyclic, flat_cos, one_cycle, sgdr

torch.set_num_threads(1)
CE = nn.CrossEntropyLoss()


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def learner(opt_func=torch.optim.Adam, groups=None, **kw):
    "A Learner on 256 digits in batches of 32: 8 optimizer steps per epoch."
    return Learner(digits(bs=32, n_train=256), cnn(), CE, opt_func=opt_func, progress=False,
                   splitter=None if groups is None else split_by_children(groups), **kw)

SPE = 8


class OptHypers(Callback):
    "LR and momentum of every param group, read from the optimizer right before each step."
    def __init__(self): self.lrs, self.moms = [], []
    def before_step(self, learn):
        gs = learn.opt.param_groups
        self.lrs.append([g['lr'] for g in gs])
        self.moms.append([g['betas'][0] if 'betas' in g else g['momentum'] for g in gs])


def torch_sched_lrs(make, n, momentum=False, lr=1.):
    "LRs (and momentums) a torch scheduler gives an SGD optimizer (initial `lr`) over `n` steps."
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
    s = make(opt)
    lrs, moms = [], []
    for _ in range(n):
        lrs.append(opt.param_groups[0]['lr']); moms.append(opt.param_groups[0]['momentum'])
        opt.step(); s.step()
    return (np.array(lrs), np.array(moms)) if momentum else np.array(lrs)


# ---- fit_one_cycle ----------------------------------------------------------------------------------
@pytest.mark.parametrize('opt_func', [torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD])
def test_one_cycle_lrs_and_moms_exact(opt_func):
    learn, cb = learner(opt_func), OptHypers()
    learn.fit_one_cycle(2, 1e-2, cbs=cb)
    n, it = 2 * SPE, np.arange(2 * SPE)
    s = one_cycle(1e-2, n)
    assert learn.recorder.lrs == list(s(it)) and learn.recorder.moms == list(s.mom(it))
    assert [l[0] for l in cb.lrs] == learn.recorder.lrs and [m[0] for m in cb.moms] == learn.recorder.moms
    # fastai's two-phase form, written out: cosine up over pct_start of the steps, cosine down after
    pos = it / n
    cos_ = lambda p, a, b: a + (b - a) * (1 - np.cos(np.pi * p)) / 2
    ref = np.where(pos < 0.25, cos_(pos / 0.25, 1e-2 / 25, 1e-2), cos_((pos - 0.25) / 0.75, 1e-2, 1e-2 / 1e5))
    ref_mom = np.where(pos < 0.25, cos_(pos / 0.25, 0.95, 0.85), cos_((pos - 0.25) / 0.75, 0.85, 0.95))
    np.testing.assert_allclose(learn.recorder.lrs, ref, rtol=1e-12)
    np.testing.assert_allclose(learn.recorder.moms, ref_mom, rtol=1e-12)


def test_one_cycle_three_phase_equals_torch_onecycle():
    learn = learner(torch.optim.SGD)
    learn.fit_one_cycle(3, 0.1, div=10., div_final=1e3, pct_start=0.3, three_phase=True)
    n = 3 * SPE
    lrs, moms = torch_sched_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.1, total_steps=n, pct_start=0.3, anneal_strategy='linear', three_phase=True, div_factor=10.,
        final_div_factor=100., base_momentum=0.85, max_momentum=0.95), n, momentum=True)
    np.testing.assert_allclose(learn.recorder.lrs, lrs, rtol=1e-9)
    np.testing.assert_allclose(learn.recorder.moms, moms, rtol=1e-9)


def test_one_cycle_per_group_with_slice():
    learn = learner(groups=3)
    learn.fit_one_cycle(1, slice(1e-4, 1e-2))
    it = np.arange(SPE)
    s = one_cycle(1e-2, SPE)
    glrs = np.array(learn.recorder.group_lrs)
    np.testing.assert_array_equal(glrs[:, -1], s(it))
    np.testing.assert_allclose(glrs, s(it)[:, None] * np.array([1e-4, 1e-3, 1e-2])[None] / 1e-2, rtol=1e-12)
    # each group follows its own one cycle, peaking at its own lr_max
    for g, peak in enumerate([1e-4, 1e-3, 1e-2]): np.testing.assert_allclose(glrs[:, g], one_cycle(peak, SPE)(it), rtol=1e-12)


def test_one_cycle_moms_none_leaves_momentum_alone():
    learn = learner(torch.optim.Adam)
    learn.fit_one_cycle(1, 1e-2, moms=None)
    assert set(learn.recorder.moms) == {0.9}


# ---- fit_clr ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('mode,gamma', [('triangular', 1.), ('triangular2', 1.), ('exp_range', 0.97)])
def test_clr_equals_torch_cycliclr(mode, gamma):
    learn = learner(torch.optim.SGD)
    learn.fit_clr(4, 1e-3, 1e-2, mode=mode, step_size=4, gamma=gamma)
    n = 4 * SPE
    assert learn.recorder.lrs == list(cyclic(1e-3, 1e-2, 4, mode=mode, gamma=gamma, total_steps=n)(np.arange(n)))
    ref = torch_sched_lrs(lambda o: torch.optim.lr_scheduler.CyclicLR(o, 1e-3, 1e-2, step_size_up=4, mode=mode, gamma=gamma,
                                                                        cycle_momentum=False), n)
    np.testing.assert_allclose(learn.recorder.lrs, ref, rtol=1e-9)


@pytest.mark.parametrize('n_epoch,step_size', [(1, SPE // 2), (2, SPE), (8, 4 * SPE), (20, 4 * SPE)])
def test_clr_default_step_size(n_epoch, step_size):
    "Default: 4 epochs of steps (Smith: 2-10 epochs), but at most half the run so a short run still has a full cycle."
    learn = learner(torch.optim.SGD)
    if n_epoch > 2: learn.dls = digits(bs=128, n_train=128)  # one batch per epoch keeps the long runs short
    spe = learn._steps_per_epoch()
    learn.fit_clr(n_epoch, 1e-3, 1e-2)
    step = step_size if n_epoch <= 2 else min(4, n_epoch // 2)
    lrs = np.array(learn.recorder.lrs)
    assert lrs.argmax() == step and lrs[step] == pytest.approx(1e-2, rel=1e-12) and lrs[0] == 1e-3
    assert len(lrs) == n_epoch * spe


def test_clr_cycles_momentum_inversely():
    learn = learner(torch.optim.SGD)
    learn.fit_clr(2, 1e-3, 1e-2, moms=(0.95, 0.85))
    lrs, moms = np.array(learn.recorder.lrs), np.array(learn.recorder.moms)
    np.testing.assert_allclose((moms - 0.95) / (0.85 - 0.95), (lrs - 1e-3) / (1e-2 - 1e-3), atol=1e-12)
    assert moms[0] == 0.95 and moms[SPE] == pytest.approx(0.85)


# ---- fit_sgdr --------------------------------------------------------------------------------------
@pytest.mark.parametrize('cycle_mult', [1, 2])
def test_sgdr_equals_torch_warm_restarts(cycle_mult):
    learn = learner(torch.optim.SGD)
    learn.fit_sgdr(2, 1, 0.05, cycle_mult=cycle_mult, eta_min=1e-4)
    n_epoch = 1 + cycle_mult
    n = n_epoch * SPE
    assert len(learn.recorder.values) == n_epoch and len(learn.recorder.lrs) == n
    assert learn.recorder.lrs == list(sgdr(0.05, SPE, T_mult=cycle_mult, eta_min=1e-4, n_cycles=2)(np.arange(n)))
    ref = torch_sched_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=SPE, T_mult=cycle_mult, eta_min=1e-4), n, lr=0.05)
    np.testing.assert_allclose(learn.recorder.lrs, ref, rtol=1e-9)
    assert learn.recorder.lrs[SPE] == 0.05  # a warm restart after the first cycle


# ---- fit_flat_cos ----------------------------------------------------------------------------------
def test_flat_cos():
    learn = learner()
    learn.fit_flat_cos(2, 3e-3)
    n, it = 2 * SPE, np.arange(2 * SPE)
    assert learn.recorder.lrs == list(flat_cos(3e-3, n)(it))
    pos = it / n
    ref = np.where(pos < 0.75, 3e-3, 3e-3 / 1e5 + (3e-3 - 3e-3 / 1e5) * (1 + np.cos(np.pi * (pos - 0.75) / 0.25)) / 2)
    np.testing.assert_allclose(learn.recorder.lrs, ref, rtol=1e-12)
    assert set(learn.recorder.moms) == {0.9}  # flat_cos does not schedule momentum


# ---- fine_tune ---------------------------------------------------------------------------------------
def test_fine_tune_phases():
    class Phases(Callback):
        "Per fit: the group LRs used, and which parameters could train."
        def __init__(self): self.glrs, self.trainable = [], []
        def after_fit(self, learn):
            self.glrs.append(np.array(learn.recorder.group_lrs))
            self.trainable.append([p.requires_grad for p in learn.model.parameters()])
    learn, cb = learner(groups=3), Phases()
    first = [p.detach().clone() for p in learn.model[0].parameters()]
    learn.fine_tune(2, base_lr=2e-3, cbs=cb)
    assert len(cb.glrs) == 2
    it1, it2 = np.arange(SPE), np.arange(2 * SPE)
    # phase 1: frozen, fastai's slice(base_lr) (earlier groups base_lr/10), pct_start=0.99, div=25
    np.testing.assert_allclose(cb.glrs[0], one_cycle(2e-3, SPE, pct_start=0.99)(it1)[:, None] * np.array([.1, .1, 1.]), rtol=1e-12)
    norm = {id(p) for p in norm_params(learn.model)}
    head = {id(p) for p in learn.model[-1].parameters()}
    assert cb.trainable[0] == [id(p) in norm or id(p) in head for p in learn.model.parameters()]
    # phase 2: unfrozen, slice(base_lr/lr_mult, base_lr) spread geometrically, pct_start=0.3, div=5
    np.testing.assert_allclose(cb.glrs[1], one_cycle(2e-3, 2 * SPE, pct_start=0.3, div=5.)(it2)[:, None]
                               * np.geomspace(2e-5, 2e-3, 3)[None] / 2e-3, rtol=1e-12)
    assert all(cb.trainable[1]) and not all(torch.equal(a, b) for a, b in zip(first, learn.model[0].parameters()))


# ---- momentum for both optimizer kinds, resume, per-group -------------------------------------------
def test_momentum_reaches_sgd_and_adam_groups():
    for opt_func in (torch.optim.SGD, torch.optim.Adam):
        learn, cb = learner(opt_func, groups=3), OptHypers()
        learn.fit_one_cycle(1, slice(1e-3, 1e-2), cbs=cb)
        mom = one_cycle(1e-2, SPE).mom(np.arange(SPE))
        np.testing.assert_array_equal(np.array(cb.moms), np.repeat(mom[:, None], 3, axis=1))  # every group


@pytest.mark.parametrize('policy', ['fit_clr', 'fit_sgdr', 'fit_flat_cos'])
def test_policies_resume_exactly(tmp_path, policy):
    from cyclr.callback import CancelFitException, SaveModelCallback
    args = dict(fit_clr=(3, 1e-3, 1e-2), fit_sgdr=(3, 1, 1e-2), fit_flat_cos=(3, 1e-2))[policy]
    def make():
        torch.manual_seed(0)
        return learner(torch.optim.SGD, path=tmp_path)
    full = make(); getattr(full, policy)(*args)
    class Stop(Callback):
        order = 80
        def after_epoch(self, learn):
            if learn.epoch == 0: raise CancelFitException()
    stopped = make(); getattr(stopped, policy)(*args, cbs=[SaveModelCallback(every_epoch=True), Stop()])
    resumed = make(); torch.rand(3); getattr(resumed, policy)(*args, resume_from='model_0')
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()))
    assert full.recorder.lrs == resumed.recorder.lrs and len(full.recorder.lrs) == 3 * SPE


def test_a_range_test_result_is_an_lr():
    "fit_one_cycle(n, res) trains at the result's one-cycle recommendation, fit_flat_cos at its constant one; each group keeps the test's ratio."
    learn = learner(groups=3)
    learn.lr = slice(1e-4, 1e-2)
    learn.create_opt()
    res = learn.lr_find(num_it=40, show_plot=False)
    assert np.isfinite(res.one_cycle) and np.isfinite(res.constant) and len(res.lr_ratios) == 3
    learn.fit_one_cycle(1, res)
    np.testing.assert_allclose(learn.sched.params['lr_max'], res.one_cycle * np.array(res.lr_ratios), rtol=1e-12)
    learn.fit_flat_cos(1, res)
    np.testing.assert_allclose(learn.sched.params['lr_max'], res.constant * np.array(res.lr_ratios), rtol=1e-12)
    res.recommendations = {k: math.nan for k in res.recommendations}   # a test that found nothing
    res.no_suggestion = 'the loss never fell below its starting level'
    with pytest.raises(ValueError, match='`lr_max` must be a range test with a recommendation for one_cycle'):
        learn.fit_one_cycle(1, res)
