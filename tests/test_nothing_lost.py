"""Nothing is lost: interrupted fits (every policy) and range tests leave a usable Learner, lr_find restores bit-exactly
after every kind of interruption, a fit stopped by the user resumes to the same end state, and seeded runs repeat
exactly -- also in a fresh interpreter. (tests/test_learner.py covers the basic cases; these extend them.)"""
import copy
import os
import random
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cyclr.data import digits
from cyclr.discriminative import split_by_children
from cyclr.callback import Callback, SaveModelCallback, TerminateOnNaNCallback
from cyclr.learner import Learner
from cyclr.metrics import accuracy
from cyclr.schedules import cosine
import _helpers
from _helpers import assert_same

torch.set_num_threads(1)
SPE = 4  # 128 digits in batches of 32


def cnn(seed=0, dropout=0.1):
    "With dropout on by default here: RNG state that a resume must not lose."
    return _helpers.cnn(seed, dropout)


class Loss:
    "Cross-entropy with a trap: from training call `at` on, raise `exc` or return `value` (NaN, a huge loss)."
    def __init__(self): self.calls, self.at, self.exc, self.value = 0, None, None, None
    def arm(self, at, exc=None, value=None): self.calls, self.at, self.exc, self.value = 0, at, exc, value
    def disarm(self): self.at = None
    def __call__(self, pred, y):
        loss = nn.functional.cross_entropy(pred, y)
        if not torch.is_grad_enabled() or self.at is None: return loss
        self.calls += 1
        if self.calls < self.at: return loss
        if self.exc is not None: raise self.exc('trap')
        return loss * self.value


def learner(seed=0, **kw):
    torch.manual_seed(seed)
    kw = dict(dict(metrics=accuracy, progress=False, splitter=split_by_children(3)), **kw)
    return Learner(digits(bs=32, n_train=128), cnn(seed), Loss(), **kw)


def full_state(learn):
    "Deep copies of everything a side trip could change: weights, buffers, optimizer, hyper-parameters, flags, RNGs, record."
    return dict(model={k: v.clone() for k, v in learn.model.state_dict().items()},
                opt=copy.deepcopy(learn.opt.state_dict()), opt_id=id(learn.opt),
                grads=[None if p.grad is None else p.grad.clone() for p in learn.model.parameters()],
                requires_grad=[p.requires_grad for p in learn.model.parameters()],
                modes=[m.training for m in learn.model.modules()],
                rng=(torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()),
                gen=learn.dls.train.generator.get_state(), recorder=learn.recorder.state_dict())




def params(learn): return [p.detach().clone() for p in learn.model.parameters()]


class LastStep(Callback):
    "The weights after the latest optimizer step."
    order = -1  # before the callback that interrupts
    def __init__(self): self.params = None
    def after_step(self, learn): self.params = params(learn)


class RaiseAt(Callback):
    "Raise `exc` in `event` once `learn.step` reaches `step` (in training)."
    def __init__(self, exc, step, event='after_step'): self.exc, self.step = exc, step; setattr(self, event, self._maybe)
    def _maybe(self, learn):
        if learn.training and learn.step >= self.step: raise self.exc('interrupted')


POLICIES = {'fit': lambda l, **kw: l.fit(2, lr=slice(1e-3, 1e-2), sched=cosine(1e-2, 2 * SPE), **kw),
            'fit_one_cycle': lambda l, **kw: l.fit_one_cycle(2, slice(1e-3, 1e-2), **kw),
            'fit_clr': lambda l, **kw: l.fit_clr(2, 1e-4, slice(1e-3, 1e-2), step_size=3, **kw),
            'fit_sgdr': lambda l, **kw: l.fit_sgdr(2, 1, slice(1e-3, 1e-2), **kw),
            'fit_flat_cos': lambda l, **kw: l.fit_flat_cos(2, slice(1e-3, 1e-2), **kw),
            'fine_tune': lambda l, **kw: l.fine_tune(2, base_lr=1e-2, **kw)}  # a frozen epoch, then 2 unfrozen


# ---------------------------------------------------------------- interrupted fits leave a usable Learner

@pytest.mark.parametrize('how', ['KeyboardInterrupt', 'error in a callback', 'NaN loss'])
@pytest.mark.parametrize('policy', list(POLICIES))
def test_interrupted_fit_keeps_the_weights_reached_and_the_learner_usable(policy, how):
    learn, last = learner(progress=True), LastStep()  # the progress bar must be closed too
    first = SPE if policy == 'fine_tune' else 0       # fine_tune: the interruption comes in its second (unfrozen) fit
    if how == 'NaN loss':
        learn.loss_func.arm(first + 6, value=float('nan'))
        POLICIES[policy](learn, cbs=[TerminateOnNaNCallback(), last])  # ends quietly, before the NaN's backward
    else:
        exc = KeyboardInterrupt if how == 'KeyboardInterrupt' else RuntimeError
        with pytest.raises(exc, match='interrupted'): POLICIES[policy](learn, cbs=[RaiseAt(exc, 5), last])
    assert learn.step == 5 and len(learn.recorder.lrs) == 5
    assert all(torch.equal(p, q) for p, q in zip(last.params, learn.model.parameters()))  # the weights reached
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert not learn.in_fit and not learn.training and learn.cbs[0]._pbar is None
    assert all(p.grad is None for p in learn.model.parameters())
    # usable: the next fit runs whole, without the callbacks of the interrupted one, from the weights reached
    learn.loss_func.disarm()
    before = params(learn)
    learn.fit(1, lr=1e-3)
    assert learn.step == SPE and len(learn.recorder.values) == 1 and np.isfinite(learn.recorder.values[0]).all()
    assert not all(torch.equal(p, q) for p, q in zip(before, learn.model.parameters()))


def test_an_error_in_after_fit_of_an_interrupted_fit_does_not_hide_the_interrupt():
    class BadAfterFit(Callback):
        def after_fit(self, learn): raise ValueError('after_fit failed')
    learn = learner()
    with pytest.raises(KeyboardInterrupt): learn.fit(1, cbs=[RaiseAt(KeyboardInterrupt, 2), BadAfterFit()])
    assert not learn.in_fit
    learn.fit(1)  # usable


# ---------------------------------------------------------------- lr_find restores bit-exactly

INTERRUPTIONS = {'KeyboardInterrupt': dict(exc=KeyboardInterrupt), 'error': dict(exc=RuntimeError),
                 'NaN loss': dict(value=float('nan')), 'divergence': dict(value=1e6)}

@pytest.mark.parametrize('setup', ['fresh', 'trained+frozen+eval', 'grad_accum+bf16'])
@pytest.mark.parametrize('how', list(INTERRUPTIONS))
def test_lr_find_restores_bit_exactly_and_leaves_no_trace(setup, how):
    "After lr_find -- however it ended -- the Learner is bit-identical and trains exactly as a twin that never ran it."
    def make():
        kw = dict(opt_func=torch.optim.SGD, wd=1e-4) if setup != 'grad_accum+bf16' else dict(grad_accum=2, mixed_precision='bf16')
        learn = learner(**kw)
        if setup == 'trained+frozen+eval':
            learn.fit_one_cycle(1, 1e-2)                       # momentum buffers, BN statistics, a Recorder
            learn.freeze_to(1, train_bn=False)
            learn.model.eval()
        return learn
    learn, twin = make(), make()
    before = full_state(learn)
    n_it, accum = 12, learn.grad_accum
    learn.loss_func.arm(n_it * accum + 3 * accum, **INTERRUPTIONS[how])  # in the 3rd step of the second run
    kw = dict(start_lr=1e-5, end_lr=0.1, num_it=n_it, n_runs=2, show_plot=False)
    if 'exc' in INTERRUPTIONS[how]:
        with pytest.raises(INTERRUPTIONS[how]['exc']): learn.lr_find(**kw)
    else:
        res = learn.lr_find(**kw)
        assert res.runs[0].stop_reason == 'completed' and len(res.runs[1].lrs) == 3
        assert res.runs[1].stop_reason == ('nan' if how == 'NaN loss' else 'diverged')
    learn.loss_func.disarm()
    assert_same(full_state(learn), before)
    # no trace: the next fit is bit-identical to the twin's
    rng = torch.get_rng_state()
    for l in (learn, twin): torch.set_rng_state(rng); l.fit(1, lr=1e-3)  # the same dropout masks
    assert_same(full_state(learn)['model'], full_state(twin)['model'])
    assert learn.recorder.losses == twin.recorder.losses


# ---------------------------------------------------------------- the bug: modes and micro-batches across runs

class ModeLog(nn.Module):
    "Identity that logs the `training` flag of every forward."
    def __init__(self): super().__init__(); self.log = []
    def forward(self, x): self.log.append(self.training); return x


def test_every_lr_find_run_trains_in_train_mode():
    torch.manual_seed(0)
    probe = ModeLog()
    model = nn.Sequential(probe, nn.Flatten(), nn.Linear(64, 10))
    learn = Learner(digits(bs=32, n_train=128), model, nn.CrossEntropyLoss(), progress=False)
    learn.model.eval()  # the caller's mode, restored between runs
    res = learn.lr_find(num_it=6, n_runs=3, stop_div=False, show_plot=False)
    assert len(probe.log) == 18 and all(probe.log)  # 3 runs x 6 steps, each in training mode
    assert not any(m.training for m in learn.model.modules())


def test_no_micro_batch_of_one_run_leaks_into_the_next():
    "With grad_accum=3 and max_skips=1 a run stops after 2 micro-batches; the next run must not count them."
    learn = learner(grad_accum=3)
    calls = []
    real = learn.loss_func
    def loss_func(pred, y):
        loss = real(pred, y); calls.append(float(loss.detach())); return loss
    learn.loss_func = loss_func
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        res = learn.lr_find(num_it=5, n_runs=2, max_skips=1, show_plot=False)
    assert sum('skipped 2 optimizer steps' in str(x.message) for x in w) == 2  # once per run
    # each run: micro-batch 1 skipped, micro-batch 2 skipped (> max_skips): stop with no step recorded
    assert [len(r.raw_losses) for r in res.runs] == [0, 0] and len(calls) == 4


# ---------------------------------------------------------------- a fit stopped by the user resumes exactly

@pytest.mark.parametrize('policy', [p for p in POLICIES if p != 'fine_tune'])
def test_user_interrupt_mid_epoch_then_resume_from_the_last_checkpoint(tmp_path, policy):
    run = lambda learn, **kw: {'fit': lambda: learn.fit(3, lr=slice(1e-3, 1e-2), sched=cosine(1e-2, 3 * SPE), **kw),
                               'fit_one_cycle': lambda: learn.fit_one_cycle(3, slice(1e-3, 1e-2), **kw),
                               'fit_clr': lambda: learn.fit_clr(3, 1e-4, slice(1e-3, 1e-2), step_size=3, **kw),
                               'fit_sgdr': lambda: learn.fit_sgdr(2, 1, slice(1e-3, 1e-2), cycle_mult=2, **kw),
                               'fit_flat_cos': lambda: learn.fit_flat_cos(3, slice(1e-3, 1e-2), **kw)}[policy]()
    full = learner(path=tmp_path / 'full'); run(full)
    learn, last = learner(path=tmp_path), LastStep()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of the third epoch
        run(learn, cbs=[SaveModelCallback(every_epoch=True), last, RaiseAt(KeyboardInterrupt, 2 * SPE + 2)])
    assert all(torch.equal(p, q) for p, q in zip(last.params, learn.model.parameters()))  # kept the weights reached
    assert sorted(p.name for p in (tmp_path / 'models').iterdir()) == ['model_0.pth', 'model_1.pth']
    torch.rand(7); np.random.rand(3)  # whatever happened since: the checkpoint restores every RNG
    run(learn, resume_from='model_1')
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), learn.model.state_dict().values()))
    f, r = full.recorder, learn.recorder
    assert f.lrs == r.lrs and f.moms == r.moms and f.losses == r.losses and f.values == r.values


# ---------------------------------------------------------------- determinism across processes

SCRIPT = textwrap.dedent('''
    import sys, torch
    from torch import nn
    from cyclr.data import digits
    from cyclr.learner import Learner
    from cyclr.metrics import accuracy
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Dropout(0.2), nn.Linear(32, 10))
    learn = Learner(digits(bs=32, n_train=128), model, nn.CrossEntropyLoss(), metrics=accuracy, progress=False)
    res = learn.lr_find(num_it=10, show_plot=False)
    learn.fit_one_cycle(2, 1e-2)
    torch.save(dict(state=learn.model.state_dict(), losses=learn.recorder.losses, values=learn.recorder.values,
                    raw=res.raw_losses.tolist(), valley=res.valley), sys.argv[1])
''')

def test_two_seeded_processes_give_identical_weights_and_records(tmp_path):
    "In-process repeatability is tested in test_learner.py; here two fresh interpreters (other hash seeds) agree."
    (tmp_path / 'run.py').write_text(SCRIPT)
    outs = []
    for i, hash_seed in enumerate(['1', '2']):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, OMP_NUM_THREADS='1')
        subprocess.run([sys.executable, str(tmp_path / 'run.py'), str(tmp_path / f'{i}.pt')], env=env, check=True, timeout=120)
        outs.append(torch.load(tmp_path / f'{i}.pt'))
    a, b = outs
    assert a.keys() == b.keys() and all(torch.equal(a['state'][k], b['state'][k]) for k in a['state'])
    assert a['losses'] == b['losses'] and a['values'] == b['values'] and a['raw'] == b['raw'] and a['valley'] == b['valley']
