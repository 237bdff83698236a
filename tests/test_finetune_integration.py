"""Integration tests of discriminative fine-tuning on a model pretrained here (digits 0-4 -> 5-9): per-group
schedules in the optimizer at every step of a real fit, lr_find with layer groups, and fine_tune's two phases."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from cyclr.data import digits
from cyclr.discriminative import norm_params, split_by_children, spread_lrs
from cyclr.callback import Callback
from cyclr.learner import Learner
from cyclr.models import simple_cnn
from cyclr.schedules import one_cycle

torch.set_num_threads(1)
CE = nn.CrossEntropyLoss()
SPLIT = split_by_children(3)  # simple_cnn: [blocks 0-1], [block 2], [head]
CONVS = ['0.0.weight', '1.0.weight', '2.0.weight']  # the conv weights of the three blocks
SPE = 5  # 16 labelled images of each of 5 classes in batches of 16


@pytest.fixture(scope='module')
def pretrained():
    "A simple_cnn trained for one epoch on digits 0-4: the body every test starts from."
    learn = Learner(digits(bs=64, classes=[0, 1, 2, 3, 4]), simple_cnn(n_classes=5, seed=0), CE, progress=False)
    learn.fit_one_cycle(1, 1e-2)
    return learn.model


def target(): return digits(bs=16, classes=[5, 6, 7, 8, 9], n_train=16, per_class=True)


def new_head(model, seed=0):
    "A copy of `model` with a new, seeded head."
    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    model[-1] = nn.Linear(model[-1].in_features, 5)
    return model


def learner(model, **kw): return Learner(target(), model, CE, splitter=SPLIT, progress=False, **kw)


def state(model): return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trainable_mask(model, n_frozen=2):
    "requires_grad of every parameter after freeze_to(n_frozen): the later groups and the norm layers."
    norm = {id(p) for p in norm_params(model)}
    frozen = {id(p) for g in SPLIT(model)[:n_frozen] for p in g if id(p) not in norm}
    return [id(p) not in frozen for p in model.parameters()]


# ---- every optimizer step of a slice fit_one_cycle ---------------------------------------------------------
class SGDReference(Callback):
    "Per optimizer step: every param group's LR and momentum, and each update against torch's SGD formula, from our own momentum buffers."
    def __init__(self): self.lrs, self.moms, self.errs, self.stepped, self.buf = [], [], [], [], {}
    def before_step(self, learn):
        gs = learn.opt.param_groups
        self.lrs.append([g['lr'] for g in gs]); self.moms.append([g['momentum'] for g in gs])
        self.expect = []
        for g in gs:
            for p in g['params']:
                if p.grad is None: continue  # frozen: SGD skips it
                b = self.buf.get(p)
                b = p.grad.clone() if b is None else b.mul(g['momentum']).add(p.grad)  # buf = mom * buf + grad (dampening 0)
                self.buf[p] = b
                self.expect.append((p, p.detach().add(b, alpha=-g['lr'])))   # p -= lr * buf
        self.stepped.append([p.grad is not None for p in learn.model.parameters()])
    def after_step(self, learn):
        self.errs.append(max(float((p.detach() - e).abs().max()) for p, e in self.expect))


@pytest.mark.parametrize('grad_accum,frozen', [(1, 0), (2, 1)])
def test_slice_one_cycle_sets_every_group_at_every_step(pretrained, grad_accum, frozen):
    learn, cb = learner(new_head(pretrained), opt_func=torch.optim.SGD, grad_accum=grad_accum), SGDReference()
    learn.freeze_to(frozen)
    start = state(learn.model)
    lo, hi, n_epoch = 1e-3, 5e-2, 2
    learn.fit_one_cycle(n_epoch, slice(lo, hi), pct_start=0.3, cbs=cb)
    n = n_epoch * -(-SPE // grad_accum)  # ceil: a last, shorter accumulation still steps
    assert len(cb.lrs) == n
    s, it = one_cycle(hi, n, pct_start=0.3), np.arange(n)
    peaks = np.array([lo, (lo * hi) ** 0.5, hi])  # geometric spread
    lrs = np.array(cb.lrs)
    np.testing.assert_array_equal(lrs[:, -1], s(it))                                  # the head: the schedule itself
    np.testing.assert_allclose(lrs, s(it)[:, None] * peaks / hi, rtol=1e-12)          # the others: scaled by their ratio
    np.testing.assert_allclose(lrs / lrs[:, -1:], np.broadcast_to(peaks / hi, lrs.shape), rtol=1e-12)
    np.testing.assert_array_equal(np.array(cb.moms), np.repeat(s.mom(it)[:, None], 3, axis=1))
    assert learn.recorder.group_lrs == cb.lrs and learn.recorder.lrs == [l[0] for l in cb.lrs]
    assert max(cb.errs) <= 1e-7  # SGD stepped every group with exactly those LRs and momentums (bitwise here)
    # frozen convolutions got no gradient and did not move; everything else did
    mask = trainable_mask(learn.model, frozen)
    assert all(st == mask for st in cb.stepped)
    after = learn.model.state_dict()
    for k in CONVS[:2]: assert torch.equal(after[k], start[k]) == bool(frozen), k
    for k in [CONVS[2], '0.1.weight', '5.weight']: assert not torch.equal(after[k], start[k]), k


# ---- lr_find with three layer groups ----------------------------------------------------------------------
class LoggingSGD(torch.optim.SGD):
    "SGD that logs, at every step, the LR of each param group and which parameters have a gradient."
    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.lr_log, self.grad_log = [], []
    def step(self, closure=None):
        self.lr_log.append([g['lr'] for g in self.param_groups])
        self.grad_log.append([p.grad is not None for g in self.param_groups for p in g['params']])
        return super().step(closure)


@pytest.mark.parametrize('frozen', [False, True])
def test_lr_find_keeps_the_group_ratios(pretrained, frozen):
    lr = slice(1e-4, 1e-2)
    learn = learner(new_head(pretrained), opt_func=LoggingSGD, lr=lr)
    if frozen: learn.freeze()
    opt, start, flags = learn.opt, state(learn.model), [p.requires_grad for p in learn.model.parameters()]
    num_it, start_lr, end_lr = 20, 1e-5, 1.
    res = learn.lr_find(start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=False, n_runs=2, show_plot=False)
    assert learn.opt is opt
    log = np.array(opt.lr_log)
    assert log.shape == (2 * num_it, 3)  # two runs of 20 steps
    sweep = start_lr * (end_lr / start_lr) ** (np.arange(num_it) / (num_it - 1))
    np.testing.assert_allclose(log[:, -1], np.tile(sweep, 2), rtol=1e-12)  # the head follows the sweep
    ratios = np.array([1e-2, 1e-1, 1.])  # slice(1e-4, 1e-2) over 3 groups, divided by the head's LR
    np.testing.assert_allclose(log / log[:, -1:], np.broadcast_to(ratios, log.shape), rtol=1e-12)
    np.testing.assert_allclose(res.lr_ratios, ratios, rtol=1e-12)
    np.testing.assert_array_equal(res.lrs, log[:num_it, -1])
    # only what may train got a gradient; afterwards everything is as before, still frozen when it was
    mask = trainable_mask(learn.model, 2 if frozen else 0)
    assert all(g == mask for g in opt.grad_log)
    np.testing.assert_allclose([g['lr'] for g in opt.param_groups], spread_lrs(lr, 3), rtol=1e-15)
    assert all(torch.equal(v, start[k]) for k, v in learn.model.state_dict().items())
    assert [p.requires_grad for p in learn.model.parameters()] == flags


# ---- fine_tune ------------------------------------------------------------------------------------------
class Phases(Callback):
    "Per fit: the group LRs the Recorder kept, requires_grad of every parameter, and the weights at the end."
    def __init__(self): self.glrs, self.flags, self.states = [], [], []
    def after_fit(self, learn):
        self.glrs.append(np.array(learn.recorder.group_lrs))
        self.flags.append([p.requires_grad for p in learn.model.parameters()])
        self.states.append(state(learn.model))


def test_fine_tune_runs_the_frozen_then_the_unfrozen_cycle(pretrained):
    base_lr, lr_mult, pct_start, div, epochs, freeze_epochs = 5e-3, 20, 0.4, 8., 3, 2
    learn, cb = learner(new_head(pretrained)), Phases()
    start = state(learn.model)
    learn.fine_tune(epochs, base_lr=base_lr, freeze_epochs=freeze_epochs, lr_mult=lr_mult, pct_start=pct_start, div=div, cbs=cb)
    assert len(cb.glrs) == 2
    # phase 1: freeze_epochs of one cycle with slice(base_lr) (fastai: base_lr/10 for the earlier groups), pct_start=0.99
    n1 = freeze_epochs * SPE
    np.testing.assert_allclose(cb.glrs[0], one_cycle(base_lr, n1, pct_start=0.99)(np.arange(n1))[:, None] * [.1, .1, 1.], rtol=1e-12)
    np.testing.assert_allclose(cb.glrs[0][0], np.array([.1, .1, 1.]) * base_lr / 25, rtol=1e-15)  # one_cycle's default div
    assert cb.flags[0] == trainable_mask(learn.model)
    s1 = cb.states[0]
    for k in CONVS: assert torch.equal(s1[k], start[k]), k  # the body's convolutions stayed put
    for k in ['0.1.weight', '0.1.running_mean', '5.weight', '5.bias']: assert not torch.equal(s1[k], start[k]), k  # BN and head learned
    # phase 2: `epochs` of one cycle, unfrozen, slice(base_lr/lr_mult, base_lr), the given pct_start and div
    n2 = epochs * SPE
    peaks = np.geomspace(base_lr / lr_mult, base_lr, 3)
    np.testing.assert_allclose(cb.glrs[1], one_cycle(base_lr, n2, pct_start=pct_start, div=div)(np.arange(n2))[:, None] * peaks / base_lr, rtol=1e-12)
    np.testing.assert_allclose(cb.glrs[1][0], peaks / div, rtol=1e-15)      # starts at peak/div
    assert cb.glrs[1][:, -1].argmax() == pct_start * n2 == 6
    np.testing.assert_allclose(cb.glrs[1][6], peaks, rtol=1e-15)            # every group at its own peak at step 6
    assert all(cb.flags[1])
    for k in CONVS: assert not torch.equal(cb.states[1][k], s1[k]), k
    # afterwards: unfrozen, and the Recorder holds the unfrozen phase (every fit starts a new record)
    assert all(p.requires_grad for p in learn.model.parameters())
    assert len(learn.recorder.values) == epochs and np.array_equal(np.array(learn.recorder.group_lrs), cb.glrs[1])


def test_fine_tune_without_frozen_epochs_trains_everything_from_the_start(pretrained):
    learn, cb = learner(new_head(pretrained)), Phases()
    learn.freeze()  # fine_tune unfreezes even a model frozen before
    start = state(learn.model)
    learn.fine_tune(2, base_lr=1e-2, freeze_epochs=0, lr_mult=10, cbs=cb)
    assert len(cb.glrs) == 1 and all(cb.flags[0])
    np.testing.assert_allclose(cb.glrs[0], one_cycle(1e-2, 2 * SPE, pct_start=0.3, div=5.)(np.arange(2 * SPE))[:, None]
                               * np.array([1e-3, 1e-3 ** 0.5 * 1e-2 ** 0.5, 1e-2]) / 1e-2, rtol=1e-12)
    for k in CONVS: assert not torch.equal(cb.states[0][k], start[k]), k


@pytest.mark.parametrize('kwargs,name', [(dict(pct_start=1.5), 'pct_start'), (dict(pct_start=0.), 'pct_start'),
                                         (dict(div=0.), 'div'), (dict(div=-5.), 'div')])
def test_fine_tune_checks_the_second_phase_before_freezing(pretrained, kwargs, name):
    "A bad argument of the unfrozen phase fails before the frozen phase has frozen or trained anything."
    learn = learner(new_head(pretrained))
    start = state(learn.model)
    with pytest.raises(ValueError, match=f'`{name}`'): learn.fine_tune(1, freeze_epochs=1, **kwargs)
    assert all(p.requires_grad for p in learn.model.parameters())
    assert all(torch.equal(v, start[k]) for k, v in learn.model.state_dict().items())
    assert learn.recorder.group_lrs == [] and not learn.in_fit
