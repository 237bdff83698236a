"Edge cases, restoration, bad input and properties of `cyclr.lr_find` (the notebook nbs/08_lr_find.ipynb shows the basics)."
import copy
import math
import os
import random
import stat
import tempfile
import warnings

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cyclr.lr_curve import (POLICY_RULES, clr_bounds, fitted_curve, fitted_min, minimum, one_cycle_max, recommend, slide,
                            smooth_losses, steep, sweep_lrs, valley, valley_end)
from cyclr.lr_find import LRFindResult, lr_find
from _helpers import assert_same

torch.set_num_threads(1)

# ---------------------------------------------------------------- helpers

class Counter(nn.Module):
    "Counts training forwards in a non-persistent buffer (state_dict does not see it; lr_find must restore it)."
    def __init__(self):
        super().__init__()
        self.register_buffer('calls', torch.zeros((), dtype=torch.int64), persistent=False)
    def forward(self, x):
        if self.training: self.calls += 1
        return x

def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), Counter(), nn.Linear(16, 3))

def make_data(n=96, bs=16, seed=0, generator=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, generator=generator)

def train(model, opt, dl, n_steps, loss_func=nn.CrossEntropyLoss()):
    model.train()
    it = iter(dl)
    for _ in range(n_steps):
        try: xb, yb = next(it)
        except StopIteration: it = iter(dl); xb, yb = next(it)
        loss_func(model(xb), yb).backward()
        opt.step(); opt.zero_grad()

def snapshot(model, opt, *loaders):
    "Independent deep copies of everything lr_find promises to restore."
    gens = [g for dl in loaders for g in (getattr(dl, 'generator', None),) if g is not None]
    return dict(
        params={k: v.detach().clone() for k, v in model.named_parameters()},
        buffers={k: v.detach().clone() for k, v in model.named_buffers()},
        grads={k: None if v.grad is None else v.grad.clone() for k, v in model.named_parameters()},
        requires_grad={k: v.requires_grad for k, v in model.named_parameters()},
        training=[m.training for m in model.modules()],
        opt=copy.deepcopy(opt.state_dict()),
        opt_keys=[sorted(s.keys()) for s in opt.state.values()],
        n_opt_state=len(opt.state),
        torch_rng=torch.get_rng_state(), np_rng=np.random.get_state(), py_rng=random.getstate(),
        gens=[g.get_state() for g in gens])


LOSS = nn.CrossEntropyLoss()
OPTS = {'sgd_momentum': lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
        'adam': lambda p: torch.optim.Adam(p, lr=1e-3),
        'adamw_amsgrad': lambda p: torch.optim.AdamW(p, lr=1e-3, amsgrad=True)}

# ---------------------------------------------------------------- restoration

@pytest.mark.parametrize('opt_name', list(OPTS))
def test_restores_bit_exactly_after_training(opt_name):
    model, dl = make_model(), make_data()
    opt = OPTS[opt_name](model.parameters())
    train(model, opt, dl, 7)
    model[0].bias.requires_grad_(False)   # a frozen parameter stays frozen
    model[1].eval()                       # a BN layer in eval inside a model in train mode stays so
    model[4].weight.grad = torch.full_like(model[4].weight, .5)  # a pending gradient comes back too
    before = snapshot(model, opt, dl)
    res = lr_find(model, dl, LOSS, opt, num_it=30, end_lr=1.)
    assert len(res.lrs) >= 10
    assert_same(snapshot(model, opt, dl), before)

def test_restores_optimizer_state_created_during_the_test():
    "A fresh Adam has no state; after the test it has none again (no zero moments left behind)."
    model, dl = make_model(), make_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = snapshot(model, opt, dl)
    lr_find(model, dl, LOSS, opt, num_it=10)
    assert len(opt.state) == 0
    assert_same(snapshot(model, opt, dl), before)

def test_restores_in_place_and_keeps_references():
    "Parameters and optimizer state tensors are the same objects afterwards (copied back in place)."
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, dl, 3)
    params = list(model.parameters())
    bufs = [opt.state[p]['momentum_buffer'] for p in params]
    lr_find(model, dl, LOSS, opt, num_it=10)
    assert all(a is b for a, b in zip(params, opt.param_groups[0]['params']))
    assert all(opt.state[p]['momentum_buffer'] is b for p, b in zip(params, bufs))

def test_restores_on_divergence():
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, dl, 5)
    before = snapshot(model, opt, dl)
    res = lr_find(model, dl, LOSS, opt, start_lr=1e-3, end_lr=1e8, num_it=60)
    assert res.stop_reason in ('diverged', 'nan') and len(res.lrs) < 60
    best_before = np.minimum.accumulate(res.losses)[:-1]
    last = res.losses[-1]
    assert not np.isfinite(last) or last > 4 * best_before[-1]  # the point that stopped it is kept
    assert np.all(res.losses[:-1] <= 4 * np.minimum.accumulate(res.losses)[:-1])
    assert_same(snapshot(model, opt, dl), before)

def test_restores_on_nan_loss():
    model, dl = make_model(), make_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, opt, dl, 4)
    before = snapshot(model, opt, dl)
    calls = []
    def loss_func(preds, targets):
        calls.append(1)
        loss = LOSS(preds, targets)
        return loss * float('nan') if len(calls) == 8 else loss
    res = lr_find(model, dl, loss_func, opt, num_it=30)
    assert res.stop_reason == 'nan' and len(res.lrs) == 8 and np.isnan(res.raw_losses[-1])
    assert np.all(np.isfinite(res.suggestions))  # the NaN point is not used
    assert_same(snapshot(model, opt, dl), before)

def test_nan_does_not_stop_without_stop_div():
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    def loss_func(preds, targets, n=[0]):
        n[0] += 1
        return LOSS(preds, targets) * (float('nan') if n[0] == 25 else 1.)
    res = lr_find(model, dl, loss_func, opt, num_it=30, stop_div=False)
    assert res.stop_reason == 'completed' and len(res.lrs) == 30 and np.isnan(res.losses[24:]).all()

@pytest.mark.parametrize('where', ['step_fn', 'loss_func', 'valid_metric'])
def test_restores_on_keyboard_interrupt(where):
    model, dl, vdl = make_model(), make_data(), make_data(n=20, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, dl, 5)
    model.eval()  # the caller's mode: the test switches to train, the interrupt must not leave it there
    before = snapshot(model, opt, dl, vdl)
    n = [0]
    def interrupt():
        n[0] += 1
        if n[0] == 6: raise KeyboardInterrupt
    def step_fn(xb, yb):
        model.train()
        loss = LOSS(model(*xb), yb); loss.backward(); opt.step(); opt.zero_grad()
        interrupt()
        return loss
    def loss_func(preds, targets): interrupt(); return LOSS(preds, targets)
    def metric(preds, targets): interrupt(); return (preds.argmax(1) == targets).float().mean()
    kwargs = dict(step_fn=dict(step_fn=step_fn), loss_func=dict(loss_func=loss_func),
                  valid_metric=dict(valid_dl=vdl, valid_metric=metric))[where]
    with pytest.raises(KeyboardInterrupt):
        lr_find(model, dl, kwargs.pop('loss_func', LOSS), opt, num_it=30, **kwargs)
    assert n[0] == 6
    assert_same(snapshot(model, opt, dl, vdl), before)

def test_restores_on_other_errors():
    model, dl = make_model(), make_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, opt, dl, 3)
    before = snapshot(model, opt, dl)
    def step_fn(xb, yb, n=[0]):
        LOSS(model(*xb), yb).backward(); opt.step(); opt.zero_grad()
        n[0] += 1
        return 'oops' if n[0] == 3 else 1.
    with pytest.raises(TypeError, match='step_fn'): lr_find(model, dl, LOSS, opt, num_it=10, step_fn=step_fn)
    assert_same(snapshot(model, opt, dl), before)

def test_works_in_read_only_folder(tmp_path, monkeypatch):
    "No checkpoint files: the test runs with the working directory read-only and file writing disabled."
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.chdir(ro)
    def no_files(*args, **kwargs): raise AssertionError('lr_find must not write files')
    for mod, name in [(torch, 'save'), (tempfile, 'mkstemp'), (tempfile, 'mkdtemp'), (tempfile, 'NamedTemporaryFile'),
                      (tempfile, 'TemporaryDirectory'), (tempfile, 'TemporaryFile')]:
        monkeypatch.setattr(mod, name, no_files)
    model, dl = make_model(), make_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, opt, dl, 3)
    before = snapshot(model, opt, dl)
    try:
        res = lr_find(model, dl, LOSS, opt, num_it=20)
    finally: ro.chmod(stat.S_IRWXU)
    assert len(res.lrs) == 20 and os.listdir(ro) == []
    assert_same(snapshot(model, opt, dl), before)

def test_extra_state_restored():
    class Scaler:  # the shape of a GradScaler: state_dict / load_state_dict
        def __init__(self): self.scale = 65536.
        def state_dict(self): return {'scale': self.scale}
        def load_state_dict(self, sd): self.scale = sd['scale']
    model, dl, scaler = make_model(), make_data(), Scaler()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    def step_fn(xb, yb):
        scaler.scale /= 2
        loss = LOSS(model(*xb), yb); loss.backward(); opt.step(); opt.zero_grad()
        return loss
    lr_find(model, dl, LOSS, opt, num_it=10, step_fn=step_fn, extra_state=[scaler])
    assert scaler.scale == 65536.

def test_shared_parameters():
    torch.manual_seed(0)
    shared = nn.Linear(16, 16)   # used twice: one set of parameters, one optimizer state
    model = nn.Sequential(nn.Linear(8, 16), shared, nn.ReLU(), shared, nn.Linear(16, 3))
    dl = make_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, opt, dl, 3)
    before = snapshot(model, opt, dl)
    lr_find(model, dl, LOSS, opt, num_it=10)
    assert_same(snapshot(model, opt, dl), before)

# ---------------------------------------------------------------- identical repeats

@pytest.mark.parametrize('own_generator', [False, True])
def test_two_calls_give_identical_curves(own_generator):
    "Restoring the RNGs (global, or the DataLoader's own generator) makes the second call draw the same batches."
    model = make_model()
    dl = make_data(generator=torch.Generator().manual_seed(3) if own_generator else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, dl, 3)
    a = lr_find(model, dl, LOSS, opt, num_it=40)
    b = lr_find(model, dl, LOSS, opt, num_it=40)
    np.testing.assert_array_equal(a.raw_losses, b.raw_losses)
    assert a.suggestions == b.suggestions
    # ... and the shuffle did depend on that RNG: a different state gives different batches
    torch.manual_seed(123)
    if own_generator: dl.generator.manual_seed(123)
    c = lr_find(model, dl, LOSS, opt, num_it=40)
    assert not np.array_equal(a.raw_losses, c.raw_losses)

# ---------------------------------------------------------------- the sweep

class CountingLoader:
    "Three fixed batches; counts the passes over them."
    def __init__(self, batches): self.batches, self.passes = batches, 0
    def __len__(self): return len(self.batches)
    def __iter__(self):
        self.passes += 1
        return iter(self.batches)

def constant_step(value=1.):
    "A step_fn that trains nothing and reports `value`; it records what it saw."
    def step_fn(xb, yb):
        step_fn.seen.append(xb)
        return value
    step_fn.seen = []
    return step_fn

def test_loops_over_short_data():
    batches = [(torch.full((2, 8), float(i)), torch.zeros(2, dtype=torch.long)) for i in range(3)]
    dl = CountingLoader(batches)
    step = constant_step()
    res = lr_find(make_model(), dl, LOSS, torch.optim.SGD(make_model().parameters(), lr=1.), num_it=10, step_fn=step)
    assert len(res.lrs) == 10 and res.stop_reason == 'completed' and dl.passes == 4
    assert all(isinstance(x, tuple) and len(x) == 1 for x in step.seen)   # step_fn gets the inputs as a tuple
    assert [int(x[0][0, 0]) for x in step.seen] == [0, 1, 2] * 3 + [0]

def test_one_shot_iterable_ends_the_test():
    "A generator cannot be read twice: the test ends when it runs dry."
    batches = ((torch.randn(4, 8), torch.zeros(4, dtype=torch.long)) for _ in range(5))
    model = make_model()
    res = lr_find(model, batches, LOSS, torch.optim.SGD(model.parameters(), lr=1.), num_it=20, step_fn=constant_step())
    assert res.stop_reason == 'data exhausted' and len(res.lrs) == 5

def test_empty_iterable_without_length_restores():
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, dl, 2)
    before = snapshot(model, opt, dl)
    with pytest.raises(ValueError, match='train_dl'): lr_find(model, iter([]), LOSS, opt, num_it=5)
    assert_same(snapshot(model, opt, dl), before)

@pytest.mark.parametrize('mode', ['exp', 'linear'])
def test_recorded_lrs_follow_the_formula(mode):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    res = lr_find(model, make_data(), LOSS, opt, start_lr=1e-4, end_lr=2., num_it=25, mode=mode,
                  step_fn=constant_step(), stop_div=False)
    i = np.arange(25)
    expected = 1e-4 * (2. / 1e-4) ** (i / 24) if mode == 'exp' else 1e-4 + (2. - 1e-4) * i / 24
    np.testing.assert_allclose(res.lrs, expected, rtol=1e-12)
    assert res.lrs[0] == 1e-4 and math.isclose(res.lrs[-1], 2., rel_tol=1e-12) and res.mode == mode
    assert opt.param_groups[0]['lr'] == 0.3

def test_param_groups_keep_their_ratios():
    model = make_model()
    opt = torch.optim.SGD([{'params': model[0].parameters(), 'lr': 1e-3},
                           {'params': model[1].parameters(), 'lr': 4e-3, 'momentum': 0.5},
                           {'params': list(model[4].parameters()), 'lr': 1e-2}], lr=0.1, momentum=0.9)
    seen = []
    def step_fn(xb, yb):
        seen.append([g['lr'] for g in opt.param_groups])
        loss = LOSS(model(*xb), yb); loss.backward(); opt.step(); opt.zero_grad()
        return loss
    model.train()
    res = lr_find(model, make_data(), LOSS, opt, num_it=20, end_lr=1., step_fn=step_fn, stop_div=False)
    seen = np.array(seen)
    np.testing.assert_allclose(seen[:, 2], sweep_lrs(1e-7, 1., 20), rtol=1e-12)  # the last group follows the sweep
    np.testing.assert_allclose(seen[:, 0] / seen[:, 2], .1, rtol=1e-12)
    np.testing.assert_allclose(seen[:, 1] / seen[:, 2], .4, rtol=1e-12)
    np.testing.assert_allclose(res.lrs, seen[:, 2], rtol=0)
    np.testing.assert_allclose(res.lr_ratios, (.1, .4, 1.))
    assert [g['lr'] for g in opt.param_groups] == [1e-3, 4e-3, 1e-2]
    assert [g['momentum'] for g in opt.param_groups] == [0.9, 0.5, 0.9]

def test_last_group_without_lr_gives_all_groups_the_sweep():
    model = make_model()
    opt = torch.optim.SGD([{'params': model[0].parameters(), 'lr': 1e-3},
                           {'params': model[4].parameters(), 'lr': 0.}], lr=0.1)
    seen = []
    def step_fn(xb, yb):
        seen.append([g['lr'] for g in opt.param_groups])
        return 1.
    res = lr_find(model, make_data(), LOSS, opt, num_it=5, step_fn=step_fn)
    np.testing.assert_allclose(np.array(seen), np.stack([sweep_lrs(1e-7, 10, 5)] * 2, 1), rtol=1e-12)
    assert res.lr_ratios == (1., 1.)

def test_tensor_lr_is_written_in_place():
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3))
    lr = opt.param_groups[0]['lr']
    seen = []
    def step_fn(xb, yb):
        seen.append(float(opt.param_groups[0]['lr']))
        loss = LOSS(model(*xb), yb); loss.backward(); opt.step(); opt.zero_grad()
        return loss
    lr_find(model, make_data(), LOSS, opt, num_it=6, step_fn=step_fn, stop_div=False)
    np.testing.assert_allclose(seen, sweep_lrs(1e-7, 10, 6), rtol=1e-6)
    assert opt.param_groups[0]['lr'] is lr and lr.item() == torch.tensor(1e-3).item()

def test_skipped_steps_do_not_advance_the_sweep():
    "step_fn returns None on every other batch (a GradScaler skip, or accumulation): the LR waits for real steps."
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    lrs_seen, values = [], iter(np.linspace(2., 1., 15))
    def step_fn(xb, yb):
        lrs_seen.append(opt.param_groups[0]['lr'])
        return None if len(lrs_seen) % 2 else next(values)
    res = lr_find(model, make_data(), LOSS, opt, num_it=15, step_fn=step_fn, beta=.9)
    assert len(lrs_seen) == 30 and lrs_seen[0::2] == lrs_seen[1::2]
    np.testing.assert_allclose(lrs_seen[0::2], sweep_lrs(1e-7, 10, 15), rtol=1e-12)
    np.testing.assert_allclose(res.lrs, sweep_lrs(1e-7, 10, 15), rtol=1e-12)
    # the bias correction counts optimizer steps: step i's weights are .9**(i-j), j = 0..i
    raw = np.linspace(2., 1., 15)
    for i in (0, 5, 14):
        w = .9 ** np.arange(i, -1, -1)
        assert math.isclose(res.losses[i], (w * raw[:i + 1]).sum() / w.sum(), rel_tol=1e-12)

def test_too_many_skips_stop_the_test():
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, dl, 2)
    before = snapshot(model, opt, dl)
    calls = []
    def step_fn(xb, yb): calls.append(1); return None
    with pytest.warns(UserWarning):
        res = lr_find(model, dl, LOSS, opt, num_it=10, step_fn=step_fn, max_skips=7)
    assert res.stop_reason == 'skipped steps' and len(calls) == 8 and len(res.lrs) == 0
    assert all(math.isnan(v) for v in res.suggestions)
    assert_same(snapshot(model, opt, dl), before)

def test_gradient_accumulation_with_a_custom_step():
    "Two micro-batches per optimizer step: the sweep has num_it steps and reads 2 * num_it batches."
    model, dl = make_model(), make_data(bs=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = snapshot(model, opt, dl)
    pending, n_steps = [], []
    def step_fn(xb, yb):
        loss = LOSS(model(*xb), yb)
        (loss / 2).backward()
        pending.append(loss.item())
        if len(pending) < 2: return None
        opt.step(); opt.zero_grad(); n_steps.append(1)
        mean = sum(pending) / 2; pending.clear()
        return mean
    model.train()
    res = lr_find(model, dl, LOSS, opt, num_it=12, step_fn=step_fn, stop_div=False)
    assert len(res.lrs) == 12 and len(n_steps) == 12 and model[3].calls.item() == 0
    assert_same(snapshot(model, opt, dl), before)

def test_device_moves_batches():
    model = make_model()
    seen = []
    def step_fn(xb, yb): seen.append((xb[0].device, yb.device)); return 1.
    lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=3, step_fn=step_fn,
            device='cpu')
    assert seen == [(torch.device('cpu'),) * 2] * 3

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_model_restored_including_cuda_rng():
    model, dl = make_model().cuda(), make_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_cuda = lambda: [LOSS(model(x.cuda()), y.cuda()).backward() or opt.step() or opt.zero_grad() for x, y in dl]
    train_cuda()
    before = snapshot(model, opt, dl)
    cuda_rng = torch.cuda.get_rng_state()
    def step_fn(xb, yb):
        assert xb[0].is_cuda
        torch.rand(3, device='cuda')  # uses the CUDA RNG
        loss = LOSS(model(*xb), yb); loss.backward(); opt.step(); opt.zero_grad()
        return loss
    model.train()
    res = lr_find(model, dl, LOSS, opt, num_it=20, step_fn=step_fn, n_runs=2)
    assert len(res.runs) == 2
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
    assert_same(snapshot(model, opt, dl), before)

# ---------------------------------------------------------------- smoothing and stopping, as properties

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(losses=st.lists(st.floats(0.01, 100.), min_size=2, max_size=40),
       beta=st.sampled_from([0., .5, .9, .98]), div_th=st.sampled_from([1.5, 4., math.inf]),
       start=st.floats(1e-8, 1e-2), decades=st.floats(.5, 9.))
def test_smoothing_stopping_and_suggestion_bounds(losses, beta, div_th, start, decades):
    "With losses drawn at random: recorded lrs, the smoothing, the stop rule, and every suggestion inside the range."
    end, num_it = start * 10 ** decades, len(losses)
    it = iter(losses)
    model = make_model()
    res = lr_find(model, CountingLoader([(torch.zeros(1, 8), torch.zeros(1, dtype=torch.long))]), LOSS,
                  torch.optim.SGD(model.parameters(), lr=.1), start_lr=start, end_lr=end, num_it=num_it,
                  beta=beta, div_th=div_th, step_fn=lambda xb, yb: next(it),
                  suggest_funcs=(minimum, steep, valley, slide, one_cycle_max))
    n = len(res.lrs)
    np.testing.assert_allclose(res.lrs, start * (end / start) ** (np.arange(n) / (num_it - 1)), rtol=1e-9)
    np.testing.assert_array_equal(res.raw_losses, losses[:n])
    for i in range(n):  # the smoothed loss is a weighted mean: beta**(i-j) on loss j
        w = beta ** np.arange(i, -1, -1.)
        assert math.isclose(res.losses[i], (w * np.array(losses[:i + 1])).sum() / w.sum(), rel_tol=1e-9)
    best = np.minimum.accumulate(res.losses)
    assert np.all(res.losses[:-1] <= div_th * best[:-1])                  # nothing before the stop diverged
    diverged = bool(res.losses[-1] > div_th * best[-1])                  # (possibly at the very last step)
    assert (res.stop_reason == 'diverged') == diverged and (n == num_it or diverged)
    lo, hi = res.lrs.min(), res.lrs.max()
    assert start <= lo and hi <= end * (1 + 1e-12)
    # the rules read the curve less its first tenth and last 5 steps (all of it when that leaves < 5 points); they
    # suggest something only when >= 5 points remain and the loss falls below its start (median of its first 3)
    steps = np.arange(n)
    keep = (steps >= num_it // 10) & (steps <= n - 1 - 5)
    kept = res.losses[keep] if keep.sum() >= 5 else res.losses
    start_level = np.median(kept[:3])
    if len(kept) < 5 or kept.min() >= start_level:           # too short, or never below the start: nothing
        assert all(map(math.isnan, res.suggestions)) and isinstance(res.no_suggestion, str) and res.no_suggestion
        return
    if not kept[3:].min() < start_level * (1 - 1e-6): return   # only the first points are low: see the rising test
    assert res.no_suggestion is None                          # the loss fell clearly below where it started
    for name in ('steep', 'valley', 'slide'): assert lo <= getattr(res, name) <= hi
    assert lo / 10 <= res.minimum <= hi / 10 and lo / 4 <= res.one_cycle_max <= hi / 4

@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=60), st.floats(-8, 0), st.floats(.01, .5))
def test_rules_return_a_point_of_the_curve(losses, x0, dx):
    lrs = 10 ** (x0 + dx * np.arange(len(losses)))
    grid = set(lrs.tolist())
    for rule in (steep, valley, slide): assert rule(lrs, losses) in grid
    assert minimum(lrs, losses) == lrs[np.argmin(losses)] / 10
    base, top = clr_bounds(lrs, losses)
    assert (math.isnan(base) and math.isnan(top)) or (base in grid and top in grid and base <= top)

# ---------------------------------------------------------------- suggestion rules on curves with known answers

X = np.round(np.linspace(-7, 1, 81), 10)   # log10 lr, 10 points per decade
LRS = 10 ** X

def test_minimum_and_one_cycle_max_of_a_parabola():
    curve = (X + 2.3) ** 2   # lowest at lr = 10**-2.3
    assert math.isclose(minimum(LRS, curve), 10 ** -2.3 / 10)
    assert math.isclose(one_cycle_max(LRS, curve), 10 ** -2.3 / 4)
    assert math.isclose(one_cycle_max(LRS, curve, div=3), 10 ** -2.3 / 3)
    assert math.isclose(one_cycle_max(LRS, curve, div=4), 10 ** -2.3 / 4)

def test_steep_finds_the_inflection_of_a_tanh():
    curve = 1 - np.tanh((X + 3.7) / .4)   # steepest (in log lr) at x = -3.7
    assert math.isclose(steep(LRS, curve), 10 ** -3.7)
    # on a grid that is not uniform in log lr too (np.gradient with real spacing)
    xs = np.sort(np.concatenate([X, [-3.75, -3.72, -3.65]]))
    assert math.isclose(steep(10 ** xs, 1 - np.tanh((xs + 3.7) / .4)), 10 ** -3.7)

def test_valley_is_half_way_along_the_longest_decrease():
    # flat (equal values are no decrease) to x=-6, a straight fall to x=-2 (40 steps), then up
    curve = np.where(X <= -6, 5., np.where(X <= -2, 5 - (X + 6), 1 + (X + 2) ** 2))
    # 40 steps from x=-6 (index 10) to x=-2: fastai's pick is int(40/3) + int(40/6) = 19 steps in, x = -4.1
    assert math.isclose(valley(LRS, curve), 10 ** -4.1)
    # the valley is the longest decrease, not the deepest: a later, steeper drop from 10 to 2 does not move it
    curve2 = np.where(X <= -2, curve, np.where(X <= -1, 10., np.where(X <= -.5, 10 - 16 * (X + 1), 3.)))
    assert math.isclose(valley(LRS, curve2), 10 ** -4.1)

def test_slide_stops_lr_diff_steps_before_the_bend():
    k = 50                                   # a straight decline up to step k, then a quadratic rise
    i = np.arange(len(X))
    curve = np.where(i <= k, 3 - .001 * i, 3 - .001 * k + .1 * (i - k) ** 2)
    # np.gradient is -0.001 up to step k-1 and >= (0.1 + 0.001)/2 from step k on, so walking left from the
    # end, the first pair (r, r-15) with equal slopes is r = k-1: the rule returns the LR 15 steps before k
    assert slide(LRS, curve) == LRS[k - 15]
    assert slide(LRS, curve, lr_diff=5) == LRS[k - 5]
    assert slide(LRS, curve, adjust_value=.5) == LRS[k - 15] * .5

def test_clr_bounds_of_a_smooth_step():
    curve = (1 - np.tanh((X + 3) / .5)) / 2   # from 1 down to 0, centred at x=-3
    # 10% of the drop where tanh(u) = -0.8, 90% where tanh(u) = 0.8 (u = (x+3)/0.5)
    x_lo, x_hi = -3 + .5 * np.arctanh(-.8), -3 + .5 * np.arctanh(.8)
    base, top = clr_bounds(LRS, curve)
    assert math.isclose(base, 10 ** (np.ceil(x_lo * 10) / 10)) and math.isclose(top, 10 ** (np.ceil(x_hi * 10) / 10))
    assert all(map(math.isnan, clr_bounds(LRS, X)))   # never improves: no range
    assert all(map(math.isnan, clr_bounds(LRS, np.ones_like(X))))
    with pytest.raises(ValueError, match='lo'): clr_bounds(LRS, curve, lo=.9, hi=.1)

# ---------------------------------------------------------------- the recommendation

def curve_family(num_it, x_min, right=1., noise=.03, seed=0):
    "Raw losses of a range test 1e-7 -> 10 in `num_it` steps: flat, a fall to a minimum at log10 lr = `x_min`, a rise `right` times as steep; fixed noise."
    x = np.linspace(-7, 1, num_it)
    fall = np.where(x <= x_min - 3, 1., (1 + np.cos(np.pi * np.clip(x - x_min + 3, 0, 3) / 3)) / 2)
    y = np.where(x <= x_min, fall, right * (x - x_min) ** 2)
    return y + noise * np.random.default_rng(seed).normal(size=num_it)

def range_test_on(raw, **kwargs):
    "lr_find whose step returns the given raw losses (one per step): the real smoothing, trimming, stopping and rules."
    model = make_model()
    it = iter(raw)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=len(raw),
                       step_fn=lambda xb, yb: next(it), **kwargs)

@pytest.mark.parametrize('x_min', [-4., -2.5, -1.])
@pytest.mark.parametrize('right', [.5, 1., 4.])
@pytest.mark.parametrize('seed', [0, 1])
def test_one_cycle_recommendation_does_not_depend_on_num_it(x_min, right, seed):
    "num_it 50, 100 and 200 on the same curve recommend LRs within a factor 1.5; the moving average's argmin moves more."
    recs, ema = [], []
    climb, div = POLICY_RULES['one_cycle']
    x_end = x_min + math.sqrt(climb / right)                   # where the rise has climbed back `climb` of the drop (1)
    for num_it in (50, 100, 200):
        res = range_test_on(curve_family(num_it, x_min, right, seed=seed))
        assert res.no_suggestion is None
        recs.append(res.one_cycle); ema.append(res.one_cycle_max)
        assert res.one_cycle == res.recommended == res.lr_for('one_cycle')
        assert res.one_cycle < 10 ** x_end / 2                 # well inside the valley, never where the loss climbs
    assert max(recs) / min(recs) < 1.5, recs
    assert 10 ** (x_min - 1.5) < min(recs) and max(recs) < 10 ** (x_min + .5)

def test_recommendations_are_the_valley_end_over_each_policys_divisor():
    raw = curve_family(100, -2.)
    res = range_test_on(raw)
    assert res.stop_reason == 'diverged' and len(res.raw_losses) < 100   # stopped in the blow-up: the fit reads what there is
    for policy, (climb, div) in POLICY_RULES.items():
        end = valley_end(res.lrs[10:], res.raw_losses[10:], climb)
        assert 10 ** -2 < end < 10 ** -1                       # past the minimum, before the blow-up's top
        assert math.isclose(res.lr_for(policy), end / div)
        assert math.isclose(recommend(res.lrs[10:], res.raw_losses[10:], policy), end / div)
    assert (res.one_cycle, res.constant, res.fine_tune) == tuple(res.lr_for(p) for p in ('one_cycle', 'constant', 'fine_tune'))
    assert res.constant < res.one_cycle                        # a constant LR sits lower than a cycle's peak
    assert range_test_on(raw, policy='constant').recommended == res.constant
    with pytest.raises(ValueError, match='`policy`'): res.lr_for('cosine')
    with pytest.raises(ValueError, match='`policy`'): range_test_on(raw, policy='cosine')

def polyline(x, knots):
    "The piecewise-linear curve through `knots` [(x, y), ...], flat beyond both ends."
    return np.interp(x, *zip(*knots))

def test_valley_end_is_where_the_loss_climbs_back_for_good():
    "On straight pieces a local linear fit is exact, so the end of the valley is the analytic crossing of the level."
    x = np.linspace(-7, 1, 400)
    knots = [(-6, 1.), (-5, 0.), (-3, 0.), (1, 1.)]            # flat, a fall of 1, a flat bottom, a rise of .25 per decade
    for climb in (.2, .5):                                     # crossings two fit widths or more from any kink
        assert math.isclose(math.log10(valley_end(10 ** x, polyline(x, knots), climb)), -3 + 4 * climb, abs_tol=.02)
    bumpy = polyline(x, knots) + .6 * np.exp(-.5 * ((x + 4) / .1) ** 2)   # a bump inside the valley (at -4) does not end it
    assert math.isclose(math.log10(valley_end(10 ** x, bumpy, .3)), -1.8, abs_tol=.15)
    never = polyline(x, [(-7, 1.), (-5, 0.)])                  # the loss never climbs: the last LR tested
    assert valley_end(10 ** x, never) == 10 ** x[-1]
    with pytest.raises(ValueError, match='`climb`'): valley_end(10 ** x, never, climb=0)
    with pytest.raises(ValueError, match='`climb`'): valley_end(10 ** x, never, climb=1.5)

def range_test_warned(raw, match):
    "range_test_on, asserting that it warns with `match`."
    model, it = make_model(), iter(raw)
    with pytest.warns(UserWarning, match=match):
        return lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=len(raw),
                       step_fn=lambda xb, yb: next(it))

def test_a_loss_that_never_climbs_back_falls_back_to_the_fitted_minimum():
    "No blow-up before end_lr: the valley's end is unknown, so the recommendation is the fitted minimum over the divisor."
    x = np.linspace(-7, 1, 100)
    raw = polyline(x, [(-5, 1.), (-2, .2), (-1, .25)]) + .01 * np.random.default_rng(0).normal(size=100)
    res = range_test_warned(raw, 'never climbed back')
    assert res.stop_reason == 'completed'
    for policy, (climb, div) in POLICY_RULES.items():
        assert math.isclose(res.lr_for(policy), fitted_min(res.lrs[10:], res.raw_losses[10:]) / div)

def test_a_loss_within_its_noise_is_read_from_the_blow_up():
    "A loss that never falls beyond its scatter, then blows up at 1e-1: recommended the divisor left of the blow-up, with a warning."
    x = np.linspace(-7, 1, 100)
    raw = 1 + .05 * np.random.default_rng(1).normal(size=100) + np.where(x > -1, 5 * (x + 1), 0.)
    res = range_test_warned(raw, 'no more than its step-to-step scatter')
    assert res.no_suggestion is None
    div = POLICY_RULES['one_cycle'][1]
    assert 10 ** -1.6 / div < res.one_cycle < 10 ** -.9 / div

def test_the_noise_band_ends_at_the_blow_up_on_most_noise_draws():
    "The fit of white noise wanders by about half its scatter: on 16 fixed draws at most three end the band early."
    x = np.linspace(-7, 1, 100)
    ends = []
    for seed in range(16):
        raw = 1 + .05 * np.random.default_rng(seed).normal(size=100) + np.where(x > -1, 5 * (x + 1), 0.)
        ends.append(math.log10(valley_end(10 ** x[10:], raw[10:])))
    assert sum(-1.6 < e < -.9 for e in ends) >= 13, ends

def test_fitted_curve_has_no_lag_and_ignores_the_blow_up():
    x = np.linspace(-7, 1, 200)
    line = 3 - .2 * x
    np.testing.assert_allclose(fitted_curve(10 ** x, line), line, atol=1e-9)   # a local linear fit keeps a line exactly
    raw = (x + 2) ** 2
    raw[150:] = np.inf                                         # a blow-up: inf and NaN count as the ceiling
    raw[160] = np.nan
    assert 10 ** -2.2 < fitted_min(10 ** x, raw) < 10 ** -1.8
    with pytest.raises(ValueError, match='`width`'): fitted_curve(10 ** x, raw, width=0)

def test_valley_and_slide_never_right_of_the_minimum():
    "A second, longer valley after the minimum (a bumpy curve): fastai's valley would land in it; ours stops at the minimum."
    curve = np.where(X <= -3, 3 - .5 * (X + 7), np.where(X <= -2.5, 1 + 4 * (X + 3), 3 - .05 * (X + 2.5)))
    i_min = int(np.argmin(curve))
    for rule in (valley, slide): assert rule(LRS, curve) <= LRS[i_min]

def test_result_unpacks_into_its_suggestions_like_fastai():
    res = range_test_on(curve_family(100, -2.), suggest_funcs=(minimum, steep))
    lr_min, lr_steep = res
    assert (lr_min, lr_steep) == (res.minimum, res.steep) == tuple(res.suggestions)
    assert res[0] == lr_min and res[1] == res['steep'] == lr_steep and list(res) == [lr_min, lr_steep]
    assert math.isfinite(res.recommended)                      # the recommendation is there whatever the rules
    a, b, c, d, e = range_test_on(curve_family(100, -2.))      # the five default rules
    with pytest.raises(ValueError): lr_min, = res

@pytest.mark.parametrize('raw, reason', [(np.linspace(1., 3., 60), 'never fell'), (np.ones(60), 'never fell'),
                                         (np.array([4., 3., 2., 1.]), 'at least 5')])
def test_no_suggestion_gives_nan_recommendations_and_a_reason(raw, reason):
    model = make_model()
    with pytest.warns(UserWarning, match='no LR suggestion from this range test'):
        res = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=len(raw),
                      step_fn=lambda xb, yb, it=iter(raw): next(it), stop_div=False)
    assert reason in res.no_suggestion and all(map(math.isnan, res))
    assert all(math.isnan(res.lr_for(p)) for p in POLICY_RULES) and math.isnan(res.recommended)
    plt.close(res.plot())                                      # nothing to mark, and no error

def test_n_runs_recommendation_is_the_median_of_the_runs():
    model, dl = make_model(), make_data()
    res = lr_find(model, dl, LOSS, torch.optim.SGD(model.parameters(), lr=.05, momentum=.9), num_it=40, n_runs=3)
    runs = sorted(r.one_cycle for r in res.runs)
    assert math.isclose(res.one_cycle, runs[1])

def test_rules_check_their_input():
    with pytest.raises(ValueError, match='same length'): steep([1e-3, 1e-2], [1., 2., 3.])
    with pytest.raises(ValueError, match='at least 2'): steep([1e-3], [1.])

def test_suggestions_skip_the_first_tenth_and_last_five_steps():
    model = make_model()
    got = {}
    def spy(lrs, losses): got['lrs'] = lrs; return float(lrs[0])
    # the lowest losses are in the first 5 steps (skipped); from step 5 on the loss falls steadily (beta=0: unsmoothed)
    values = [.1] * 5 + list(np.linspace(10., 1., 45))
    res = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=50, beta=0.,
                  step_fn=lambda xb, yb, it=iter(values): next(it), suggest_funcs=[spy, minimum], stop_div=False)
    np.testing.assert_array_equal(got['lrs'], res.lrs[5:45])
    assert res.spy == res.suggestions.spy == res.lrs[5] and res.suggestions._fields == ('spy', 'minimum')
    assert res.minimum == res.lrs[44] / 10 and res.no_suggestion is None   # not the lower losses of steps 0-4
    assert res.suggest([minimum], skip_end=0).minimum == res.lrs[49] / 10

def test_a_rising_curve_gives_no_suggestion():
    "The loss rises from the first step on: it never falls below its starting level, so nothing is suggested."
    model = make_model()
    with pytest.warns(UserWarning, match='no LR suggestion from this range test: .*never fell'):
        rising = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=50,
                         step_fn=lambda xb, yb, n=[0]: n.append(1) or len(n), stop_div=False)
    assert math.isnan(rising.minimum) and 'never fell' in rising.no_suggestion
    with pytest.warns(UserWarning, match='no LR suggestion'):
        assert math.isnan(rising.suggest([minimum], skip_end=0).minimum)

def test_user_rules_by_partial_and_names():
    import functools
    model = make_model()
    res = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=20,
                  step_fn=constant_step(), suggest_funcs=(functools.partial(one_cycle_max, div=4), valley))
    assert res.suggestions._fields == ('one_cycle_max', 'valley')
    with pytest.raises(AttributeError): res.steep

# ---------------------------------------------------------------- Smith's variant: validation scores

def scoring_model():
    "A model whose step_fn below does not change it, so each validation score is that of the initial model."
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 3))

def test_valid_loss_is_item_weighted():
    model, vdl = scoring_model(), make_data(n=10, bs=4, seed=2)   # batches of 4, 4 and 2
    x, y = vdl.dataset.tensors
    expected = LOSS(model(x), y).item()                          # the mean over all 10 items
    res = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=7,
                  step_fn=constant_step(), valid_dl=vdl, valid_every=3)
    np.testing.assert_array_equal(res.valid_steps, [0, 3, 6])
    np.testing.assert_allclose(res.valid_lrs, sweep_lrs(1e-7, 10, 7)[[0, 3, 6]], rtol=1e-12)
    np.testing.assert_allclose(res.valid_scores, expected, rtol=1e-6)
    assert res.score_name == 'valid loss' and not res.higher_is_better

def test_valid_metric_higher_is_better_and_rules_see_its_negative():
    model, vdl = scoring_model(), make_data(n=30, bs=7, seed=2)
    x, y = vdl.dataset.tensors
    def acc(preds, targets): return (preds.argmax(1) == targets).float().mean()
    got = {}
    def spy(lrs, values): got['values'] = values; return float(lrs[-1])
    # the model does not change, so the accuracy is flat: no suggestion (it never improves)
    with pytest.warns(UserWarning, match='no LR suggestion'):
        flat = lr_find(model, make_data(), None, torch.optim.SGD(model.parameters(), lr=.1), num_it=30,
                       step_fn=constant_step(), valid_dl=vdl, valid_metric=acc, suggest_funcs=[spy])
    np.testing.assert_allclose(flat.valid_scores, acc(model(x), y).item(), rtol=1e-6)
    assert math.isnan(flat.spy) and 'never fell' in flat.no_suggestion and 'values' not in got
    # a metric that rises by .01 per optimizer step: the rules see its negative, which falls
    step = constant_step()
    def rising_acc(preds, targets): return acc(preds, targets) + .01 * len(step.seen)
    rising_acc.__name__ = 'acc'
    res = lr_find(model, make_data(), None, torch.optim.SGD(model.parameters(), lr=.1), num_it=30,
                  step_fn=step, valid_dl=vdl, valid_metric=rising_acc, suggest_funcs=[spy])
    np.testing.assert_allclose(res.valid_scores, acc(model(x), y).item() + .01 * np.arange(1, 31), rtol=1e-6)
    np.testing.assert_array_equal(got['values'], -res.valid_scores[3:25])
    assert res.spy == res.valid_lrs[24] and res.no_suggestion is None
    assert res.higher_is_better and res.score_name == 'valid acc'

def test_valid_variant_on_training_gives_a_clr_range_and_restores():
    model, dl, vdl = make_model(), make_data(), make_data(n=48, seed=5)
    opt = torch.optim.SGD(model.parameters(), lr=.05, momentum=.9)
    train(model, opt, dl, 3)
    model.eval()
    before = snapshot(model, opt, dl, vdl)
    res = lr_find(model, dl, LOSS, opt, start_lr=1e-4, end_lr=10, num_it=40, valid_dl=vdl)
    assert len(res.valid_scores) == len(res.lrs)
    base, top = res.clr_range
    assert res.valid_lrs[0] <= base < top <= res.valid_lrs[-1]
    steps = res.valid_steps
    keep = (steps >= 4) & (steps <= steps.max() - 5) & np.isfinite(res.valid_scores)
    assert res.minimum == res.valid_lrs[keep][np.argmin(res.valid_scores[keep])] / 10
    assert_same(snapshot(model, opt, dl, vdl), before)

# ---------------------------------------------------------------- n_runs

def test_n_runs_reshuffle_restore_and_report_the_spread():
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, dl, 3)
    before = snapshot(model, opt, dl)
    single = lr_find(model, dl, LOSS, opt, num_it=30)
    res = lr_find(model, dl, LOSS, opt, num_it=30, n_runs=3)
    assert_same(snapshot(model, opt, dl), before)
    assert len(res.runs) == 3 and res.runs[0].runs == []
    np.testing.assert_array_equal(res.runs[0].raw_losses, single.raw_losses)   # run 0 is the plain test
    np.testing.assert_array_equal(res.raw_losses, single.raw_losses)
    # every run starts from the same weights, so they differ only by the order of the data
    assert not np.array_equal(res.runs[1].raw_losses, res.runs[2].raw_losses)
    assert not np.array_equal(res.runs[0].raw_losses, res.runs[1].raw_losses)
    for name in res.suggestions._fields:
        values = np.array([getattr(r, name) for r in res.runs])
        s = res.spread[name]
        assert s.min == values.min() and s.max == values.max()
        assert math.isclose(s.median, np.exp(np.median(np.log(values))))      # geometric median
        assert math.isclose(s.gstd, np.exp(np.std(np.log(values)))) and s.gstd >= 1
        assert getattr(res, name) == s.median
    again = lr_find(model, dl, LOSS, opt, num_it=30, n_runs=3)   # the reshuffles are reproducible too
    for a, b in zip(res.runs, again.runs): np.testing.assert_array_equal(a.raw_losses, b.raw_losses)

def test_n_runs_with_the_loaders_own_generator():
    model, dl = make_model(), make_data(generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = snapshot(model, opt, dl)
    res = lr_find(model, dl, LOSS, opt, num_it=20, n_runs=2)
    assert not np.array_equal(res.runs[0].raw_losses, res.runs[1].raw_losses)
    assert_same(snapshot(model, opt, dl), before)

def test_n_runs_no_suggestion_describes_the_combined_result():
    "`no_suggestion` explains NaN suggestions: the combined result has a reason only when its own suggestions are NaN."
    model = make_model()
    run = [-1]
    def before_run(): run[0] += 1
    def step_fn(xb, yb, n=[0]):
        n[0] += 1
        return 1. if run[0] == 0 else 1. / n[0]     # run 0: a flat curve; runs 1 and 2: falling ones
    with pytest.warns(UserWarning, match='no LR suggestion'):
        res = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=20,
                      step_fn=step_fn, n_runs=3, before_run=before_run)
    assert 'never fell' in res.runs[0].no_suggestion and res.runs[1].no_suggestion is None
    assert all(map(math.isfinite, res.suggestions))   # the medians of the runs that gave one
    assert res.no_suggestion is None
    with pytest.warns(UserWarning, match='no LR suggestion'):
        flat = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=20,
                       step_fn=constant_step(), n_runs=2)
    assert all(map(math.isnan, flat.suggestions)) and 'never fell' in flat.no_suggestion

# ---------------------------------------------------------------- result object and plot

def test_result_plot_marks_each_suggestion_on_the_curve():
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    res = lr_find(model, dl, LOSS, opt, num_it=40, n_runs=2)
    assert res.plot() is None                              # drawn; a notebook shows it once
    plt.close('all')
    fig = res.plot(return_fig=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == 'log' and tuple(fig.get_size_inches()) == (4.5, 3.)
    lines = ax.get_lines()
    assert len(lines) == 2 + 2 + len(res.suggestions)      # the other run, this run, the recommendation, one marker each
    curve = lines[1]
    np.testing.assert_array_equal(curve.get_xdata(), res.lrs[5:-5])
    vline, marker = lines[2:4]                             # the recommendation first: a dashed line and a big marker
    assert list(vline.get_xdata()) == [res.recommended] * 2 and vline.get_linestyle() == '--'
    assert marker.get_xdata()[0] == res.recommended and marker.get_markersize() > 4
    assert 'recommended for one cycle' in marker.get_label()
    by_lr = sorted(res.suggestions._asdict().items(), key=lambda kv: kv[1])   # then the rules, left to right
    for line, (name, lr) in zip(lines[4:], by_lr):
        assert line.get_xdata()[0] == lr and name in line.get_label() and line.get_markersize() == 4
        y = np.interp(np.log(lr), np.log(res.lrs[5:-5]), res.losses[5:-5])
        assert math.isclose(line.get_ydata()[0], y)
    labels = [l for l in ax.get_legend_handles_labels()[1] if l != 'other runs']
    assert labels[0].startswith('recommended') and [l.split(':')[0] for l in labels[-len(by_lr):]] == [n for n, _ in by_lr]
    plt.close(fig)
    fig, ax = plt.subplots()
    assert res.plot(ax=ax, skip_start=0, skip_end=0, show_suggestions=False) is None
    assert len(ax.get_lines()) == 2 and len(ax.get_lines()[1].get_xdata()) == len(res.lrs)
    plt.close(fig)

def test_result_repr_copy_and_attributes():
    model = make_model()
    res = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=20,
                  step_fn=lambda xb, yb, it=iter(np.linspace(2., 1., 20)): next(it))
    assert 'LRFindResult(20 steps' in repr(res) and 'valley=' in repr(res) and 'valley=nan' not in repr(res)
    clone = copy.deepcopy(res)
    assert clone.valley == res.valley and math.isfinite(res.valley) and isinstance(clone, LRFindResult)
    assert clone.no_suggestion is None
    with pytest.raises(AttributeError): res.no_such_rule
    # a flat curve gives no suggestion: NaN, a warning, and the reason in `no_suggestion` (kept by a copy)
    with pytest.warns(UserWarning, match='no LR suggestion from this range test: the loss never fell'):
        flat = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=20,
                       step_fn=constant_step())
    assert 'valley=nan' in repr(flat) and all(map(math.isnan, flat.suggestions))
    assert copy.deepcopy(flat).no_suggestion == flat.no_suggestion and 'never fell' in flat.no_suggestion
    # too short a curve: fewer than 5 usable points
    with pytest.warns(UserWarning, match='no LR suggestion from this range test: only 4 usable point'):
        short = lr_find(model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=4,
                        step_fn=lambda xb, yb, it=iter([4., 3., 2., 1.]): next(it))
    assert all(map(math.isnan, short.suggestions)) and 'at least 5' in short.no_suggestion

def test_show_plot_outside_notebooks(monkeypatch):
    shown = []
    import IPython.display
    monkeypatch.setattr(IPython.display, 'display', lambda fig: shown.append(fig))
    model = make_model()
    args = (model, make_data(), LOSS, torch.optim.SGD(model.parameters(), lr=.1))
    lr_find(*args, num_it=10)
    assert shown == []                       # show_plot=None: only inside IPython
    lr_find(*args, num_it=10, show_plot=True)
    assert len(shown) == 1 and hasattr(shown[0], 'savefig') and not plt.get_fignums()

def test_progress_bar_does_not_change_results():
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=.1)
    a = lr_find(model, dl, LOSS, opt, num_it=10, progress=True)
    b = lr_find(model, dl, LOSS, opt, num_it=10)
    np.testing.assert_array_equal(a.raw_losses, b.raw_losses)

# ---------------------------------------------------------------- bad input

def named_rule(lrs, losses): return float(lrs[0])

def _model(): return make_model()
BAD = [
    (dict(start_lr=0), ValueError, ['`start_lr` must be a finite number > 0', 'got 0']),
    (dict(start_lr=-1e-3), ValueError, ['`start_lr` must be a finite number > 0', 'got -0.001']),
    (dict(start_lr=float('nan')), ValueError, ['`start_lr` must be a finite number > 0', 'got nan']),
    (dict(end_lr=float('inf')), ValueError, ['`end_lr` must be a finite number > 0', 'got inf']),
    (dict(start_lr='1e-3'), TypeError, ['`start_lr` must be a finite number > 0', "got str '1e-3'"]),
    (dict(start_lr=1., end_lr=1.), ValueError, ['`start_lr` must be < `end_lr`', 'start_lr=1.0 and end_lr=1.0']),
    (dict(start_lr=1., end_lr=1e-3), ValueError, ['`start_lr` must be < `end_lr`', 'start_lr=1.0 and end_lr=0.001']),
    (dict(num_it=1), ValueError, ['`num_it` must be an integer >= 2', 'got 1']),
    (dict(num_it=10.), TypeError, ['`num_it` must be an integer >= 2', 'got float 10.0']),
    (dict(num_it=True), TypeError, ['`num_it` must be an integer >= 2', 'got bool True']),
    (dict(mode='cos'), ValueError, ["`mode` must be one of 'exp', 'linear'", "got 'cos'"]),
    (dict(beta=1.), ValueError, ['`beta` must be a finite number in [0, 1)', 'got 1.0']),
    (dict(beta=-.1), ValueError, ['`beta` must be a finite number in [0, 1)', 'got -0.1']),
    (dict(div_th=1.), ValueError, ['`div_th` must be a number > 1', 'got 1.0']),
    (dict(div_th=float('nan')), ValueError, ['`div_th` must be a number > 1', 'got nan']),
    (dict(n_runs=0), ValueError, ['`n_runs` must be an integer >= 1', 'got 0']),
    (dict(n_runs=2.), TypeError, ['`n_runs` must be an integer >= 1', 'got float 2.0']),
    (dict(valid_every=0), ValueError, ['`valid_every` must be an integer >= 1', 'got 0']),
    (dict(max_skips=-1), ValueError, ['`max_skips` must be an integer >= 0', 'got -1']),
    (dict(stop_div='yes'), TypeError, ['`stop_div` must be True or False', "got str 'yes'"]),
    (dict(progress=None), TypeError, ['`progress` must be True or False', 'got NoneType None']),
    (dict(show_plot='auto'), TypeError, ['`show_plot` must be', 'None', "got str 'auto'"]),
    (dict(suggest_funcs=(lambda lrs, losses: 1.,)), ValueError, ['suggest_funcs', '<lambda>']),
    (dict(suggest_funcs=(named_rule, named_rule)), ValueError, ['suggest_funcs', 'named_rule']),
    (dict(suggest_funcs=(minimum, 3)), TypeError, ['suggest_funcs']),
    (dict(suggest_funcs=5), TypeError, ['suggest_funcs']),
    (dict(suggest_funcs=(LRFindResult.plot,)), ValueError, ['suggest_funcs', "'plot'"]),
    (dict(valid_metric=named_rule), ValueError, ['valid_metric', 'valid_dl']),
    (dict(valid_dl=[], ), ValueError, ['valid_dl', 'empty']),
    (dict(device='nonsense'), ValueError, ['device']),
    (dict(device=3), TypeError, ['`device` must be', 'got int 3']),
    (dict(step_fn=3), TypeError, ['`step_fn` must be', 'got int 3']),
    (dict(extra_state=[object()]), TypeError, ['extra_state']),
    (dict(model=nn.Linear), TypeError, ['`model` must be a torch.nn.Module', 'got type']),
    (dict(optimizer='sgd'), TypeError, ['`optimizer` must be a torch.optim.Optimizer', "got str 'sgd'"]),
    (dict(train_dl=[]), ValueError, ['train_dl', 'empty']),
    (dict(train_dl=5), TypeError, ['`train_dl` must be', 'got int 5']),
    (dict(train_dl='batches'), TypeError, ['`train_dl` must be', "got str 'batches'"]),
    (dict(loss_func=None), TypeError, ['`loss_func` must be', 'got NoneType None']),
]

@pytest.mark.parametrize('kwargs,exc,words', BAD, ids=[', '.join(k for k in b[0]) + f'-{i}' for i, b in enumerate(BAD)])
def test_bad_input_names_the_parameter_and_changes_nothing(kwargs, exc, words):
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, opt, dl, 2)
    before = snapshot(model, opt, dl)
    args = dict(model=model, train_dl=dl, loss_func=LOSS, optimizer=opt)
    args.update(kwargs)
    with pytest.raises(exc) as e: lr_find(**args)
    for w in words: assert w in str(e.value), (w, str(e.value))
    assert_same(snapshot(model, opt, dl), before)

def test_sweep_helpers_check_input():
    with pytest.raises(ValueError, match='num_it'): sweep_lrs(1e-3, 1, 1)
    with pytest.raises(ValueError, match='beta'): smooth_losses([1., 2.], beta=1.)
    with pytest.raises(TypeError, match='batches of `train_dl`'):
        model = make_model()
        lr_find(model, [torch.zeros(2, 8)], LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=3)

# ---------------------------------------------------------------- torch.distributed

def _ddp_worker(rank, world, init_file, out_file):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = make_model()
        n = [0]
        def step_fn(xb, yb):
            n[0] += 1
            if rank == 1 and n[0] == 3: return None        # this rank's step was skipped: it counts for nothing
            if rank == 1 and n[0] == 12: return float('nan')
            return float(rank + 1) * (1 + .01 * n[0])
        res = lr_find(model, make_data(seed=rank), LOSS, torch.optim.SGD(model.parameters(), lr=.1), num_it=30,
                      step_fn=step_fn)
        torch.save({'raw': res.raw_losses, 'stop': res.stop_reason, 'lrs': res.lrs}, f'{out_file}.{rank}')
    finally: dist.destroy_process_group()

def test_distributed_ranks_share_the_curve_and_stop_together(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / 'init'), str(tmp_path / 'out')), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'out.{r}', weights_only=False) for r in (0, 1))
    # step i (1-based call n): rank 0 reports 1*(1+.01n), rank 1 reports 2*(1+.01n); call 3 of rank 1 is skipped
    expected = [(1.01 + 2.02) / 2, (1.02 + 2.04) / 2, 1.03]
    np.testing.assert_allclose(r0['raw'][:3], expected)
    np.testing.assert_array_equal(r0['raw'], r1['raw'])
    assert r0['stop'] == r1['stop'] == 'nan' and len(r0['raw']) == 12 and np.isnan(r0['raw'][-1])
    np.testing.assert_array_equal(r0['lrs'], r1['lrs'])

def test_single_rank_group_matches_plain_run(tmp_path):
    model, dl = make_model(), make_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    plain = lr_find(model, dl, LOSS, opt, num_it=15)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "init1"}', rank=0, world_size=1)
    try: ddp = lr_find(model, dl, LOSS, opt, num_it=15)
    finally: dist.destroy_process_group()
    np.testing.assert_array_equal(plain.raw_losses, ddp.raw_losses)

