"""Tests of cyclr.learner: callbacks, Recorder, accumulation, clipping, mixed precision, checkpoints, exact resume, bad input."""
import math
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cyclr.data import DataLoaders, digits
from cyclr.discriminative import split_by_children, spread_lrs
from cyclr.callback import Callback, CancelBatchException, CancelEpochException, CancelFitException, SaveModelCallback
from cyclr.fit import OverfitResult
from cyclr.learner import Learner
from cyclr.progress import ProgressCallback
from cyclr.metrics import accuracy
from cyclr.schedules import constant, cosine, one_cycle

from _helpers import cnn

torch.set_num_threads(1)
CE = nn.CrossEntropyLoss()


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def small(bs=32, n_train=256):
    "Digits with `n_train` training items (`n_train/bs` batches), shuffled by the loader's own seeded generator."
    return digits(bs=bs, n_train=n_train)


def fixed_order(bs, n=224, seed=0):
    "Unshuffled loaders over the first `n` digits, so two batch sizes see the same items in the same order."
    d = digits(bs=64)
    x, y = d.train.dataset.tensors
    ds = TensorDataset(x[:n], y[:n])
    return DataLoaders(DataLoader(ds, batch_size=bs, shuffle=False), DataLoader(ds, batch_size=64))


def params(learn): return [p.detach().clone() for p in learn.model.parameters()]
def same(a, b): return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
def state(learn): return [t.clone() for t in learn.model.state_dict().values()]


class Log(Callback):
    "Records every event it sees."
    def __init__(self): self.events = []

for _ev in ['before_fit', 'before_epoch', 'before_train', 'before_batch', 'after_pred', 'after_loss', 'before_backward',
            'after_backward', 'before_step', 'after_step', 'after_batch', 'after_train', 'before_validate',
            'after_validate', 'after_epoch', 'after_fit']:
    setattr(Log, _ev, (lambda ev: lambda self, learn: self.events.append(ev))(_ev))


# ---- callbacks ---------------------------------------------------------------------------------------
def test_event_sequence_with_accumulation():
    dls = DataLoaders(DataLoader(small().train.dataset, batch_size=100), DataLoader(small().valid.dataset, batch_size=200))
    learn = Learner(dls, mlp(), CE, grad_accum=2, progress=False)  # 3 train batches: steps after batches 1 and 2
    log = Log()
    learn.fit(1, cbs=log)
    fwd = ['before_batch', 'after_pred', 'after_loss', 'before_backward', 'after_backward']
    step = ['before_step', 'after_step']
    val = ['before_batch', 'after_pred', 'after_loss', 'after_batch']
    assert log.events == (['before_fit', 'before_epoch', 'before_train'] + fwd + ['after_batch'] + fwd + step + ['after_batch']
                          + fwd + step + ['after_batch', 'after_train', 'before_validate'] + val * 2
                          + ['after_validate', 'after_epoch', 'after_fit'])
    assert log not in learn.cbs  # fit's cbs are for that fit only


def test_callbacks_run_by_order_ties_in_insertion_order():
    seen = []
    def mk(order, tag):
        class C(Callback):
            def before_fit(self, learn): seen.append(tag)
        C.order = order
        return C()
    learn = Learner(small(), mlp(), CE, progress=False, cbs=[mk(5, 'a'), mk(-1, 'b')])
    learn.fit(1, cbs=[mk(3, 'c'), mk(5, 'd'), mk(-1, 'e')])
    assert seen == ['b', 'e', 'c', 'a', 'd']


def test_cancel_batch_skips_backward_and_step():
    class Skip(Callback):
        def __init__(self): self.after_batch_calls = 0
        def after_loss(self, learn):
            if learn.training and learn.iter == 1: raise CancelBatchException()
        def after_batch(self, learn): self.after_batch_calls += learn.training
    learn = Learner(small(), mlp(), CE, progress=False)
    cb = Skip()
    learn.fit(1, cbs=cb)
    n = len(learn.dls.train)
    assert cb.after_batch_calls == n  # after_batch runs for the cancelled batch too
    assert learn.step == n - 1 and len(learn.recorder.lrs) == n - 1 and len(learn.recorder.losses) == n - 1


def test_cancel_epoch_skips_validation_and_continues():
    class NoValid(Callback):
        def __init__(self): self.n_after_epoch = 0
        def before_validate(self, learn):
            if learn.in_fit and learn.epoch == 0: raise CancelEpochException()
        def after_epoch(self, learn): self.n_after_epoch += 1
    learn = Learner(small(), mlp(), CE, metrics=accuracy, progress=False)
    cb = NoValid()
    learn.fit(2, cbs=cb)
    v = learn.recorder.values
    assert cb.n_after_epoch == 2 and len(v) == 2
    assert math.isnan(v[0][1]) and math.isnan(v[0][2]) and not math.isnan(v[0][0])
    assert not math.isnan(v[1][1]) and not math.isnan(v[1][2])


def test_cancel_fit_keeps_weights_and_learner_usable():
    class Stop(Callback):
        def __init__(self): self.snap = None
        def after_step(self, learn):
            if learn.step == 3:
                self.snap = [p.detach().clone() for p in learn.model.parameters()]
                raise CancelFitException()
    learn, cb, log = Learner(small(), mlp(), CE, progress=False), Stop(), Log()
    learn.fit(2, cbs=[cb, log])
    assert same(cb.snap, params(learn)) and learn.step == 3 and len(learn.recorder.lrs) == 3
    assert log.events[-1] == 'after_fit' and 'after_epoch' not in log.events and not learn.in_fit
    learn.fit(1)  # still usable; a new fit starts a new record
    assert len(learn.recorder.lrs) == len(learn.dls.train)


def test_keyboard_interrupt_keeps_weights_and_runs_after_fit():
    class Interrupt(Callback):
        def __init__(self): self.snap, self.after_fit_ran = None, False
        def after_step(self, learn):
            if learn.step == 5:
                self.snap = [p.detach().clone() for p in learn.model.parameters()]
                raise KeyboardInterrupt()
        def after_fit(self, learn): self.after_fit_ran = True
    learn = Learner(small(), cnn(), CE, progress=True)  # the progress bar is closed by after_fit too
    before, cb = params(learn), Interrupt()
    with pytest.raises(KeyboardInterrupt): learn.fit_one_cycle(2, 1e-2, cbs=cb)
    assert cb.after_fit_ran and not learn.in_fit
    assert same(cb.snap, params(learn)) and not same(before, params(learn))
    assert all(p.grad is None for p in learn.model.parameters())
    assert learn.cbs[0]._pbar is None
    learn.fit(1, lr=1e-3)  # usable afterwards
    assert len(learn.recorder.lrs) == len(learn.dls.train)


# ---- the Recorder and the schedule -------------------------------------------------------------------
def test_recorded_lrs_equal_optimizer_lrs_equal_schedule_per_group():
    class Capture(Callback):
        "The LRs in the optimizer right before each step, and a check that SGD used them for the update."
        def __init__(self): self.lrs, self.ok = [], []
        def before_step(self, learn):
            self.lrs.append([g['lr'] for g in learn.opt.param_groups])
            self.before = [[(p.detach().clone(), p.grad.clone()) for p in g['params']] for g in learn.opt.param_groups]
        def after_step(self, learn):
            for g, saved in zip(learn.opt.param_groups, self.before):
                for p, (p0, gr) in zip(g['params'], saved):
                    self.ok.append(torch.allclose(p.detach(), p0 - g['lr'] * gr, rtol=1e-6, atol=1e-9))
    learn = Learner(small(), cnn(), CE, opt_func=torch.optim.SGD, splitter=split_by_children(3), progress=False)
    n = 2 * len(learn.dls.train)
    s = cosine(0.1, n)
    cb = Capture()
    learn.fit(2, lr=slice(1e-3, 0.1), sched=s, cbs=cb)
    ratios = spread_lrs(slice(1e-3, 0.1), 3) / 0.1
    expected = s(np.arange(n))[:, None] * ratios
    assert learn.recorder.group_lrs == cb.lrs                     # recorded == what the optimizer had
    np.testing.assert_array_equal(np.array(cb.lrs)[:, 2], s(np.arange(n)))   # last group: the schedule itself
    np.testing.assert_allclose(np.array(cb.lrs), expected, rtol=1e-12)
    assert learn.recorder.lrs == [l[0] for l in cb.lrs] and all(cb.ok)       # SGD stepped with those LRs


def test_recorder_smooth_losses_and_values():
    learn = Learner(small(), mlp(), CE, metrics=accuracy, progress=False)
    learn.fit(2, lr=3e-3)
    r, beta = learn.recorder, 0.98
    avg, ref = 0., []
    for i, l in enumerate(r.losses):
        avg = beta * avg + (1 - beta) * l
        ref.append(avg / (1 - beta ** (i + 1)))
    np.testing.assert_allclose(r.smooth_losses, ref, rtol=1e-12)
    n = len(learn.dls.train)
    assert r.epoch_iters == [n, 2 * n] and r.epoch_steps == [n, 2 * n]
    assert r.values[1][0] == pytest.approx(np.mean(r.losses[n:]), rel=1e-12)
    np.testing.assert_allclose(learn.validate(), r.values[1][1:], rtol=1e-6)
    assert r.metric_names == ['train_loss', 'valid_loss', 'accuracy']


def test_plots_show_every_group():
    learn = Learner(small(), cnn(), CE, splitter=split_by_children(3), progress=False)
    learn.fit_one_cycle(1, slice(1e-4, 1e-2))
    fig = learn.recorder.plot_sched(return_fig=True)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3 and fig.axes[0].get_yscale() == 'log'
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), learn.recorder.moms)
    fig2 = learn.recorder.plot_loss(return_fig=True)
    assert len(fig2.axes[0].lines) == 2 and tuple(fig2.get_size_inches()) == (4, 2.5) and fig2.axes[0].get_yscale() == 'linear'
    assert learn.recorder.plot_loss(log=True, return_fig=True).axes[0].get_yscale() == 'log'
    plt.close('all')


def test_plots_show_once_in_a_notebook():
    "Drawn and not returned (a notebook would show a returned figure a second time), unless asked for."
    learn = Learner(small(), cnn(), CE, progress=False)
    learn.fit(1)
    n = len(plt.get_fignums())
    assert learn.recorder.plot_sched() is None and learn.recorder.plot_loss() is None and one_cycle(1e-2, 100).plot() is None
    assert len(plt.get_fignums()) == n + 3   # each drew its figure, which the notebook's backend shows once
    plt.close('all')


def test_validate_and_get_preds_match_a_hand_loop():
    learn = Learner(small(), cnn(), CE, metrics=accuracy, progress=False)
    learn.fit(1, lr=1e-2)
    preds, targs = learn.get_preds()
    nv = len(learn.dls.valid.dataset)
    assert preds.shape == (nv, 10) and targs.shape == (nv,)
    learn.model.eval()
    with torch.no_grad():
        x, y = map(torch.cat, zip(*learn.dls.valid))
        out = learn.model(x)
    assert torch.equal(targs, y)
    np.testing.assert_allclose(learn.validate(), [nn.functional.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()], rtol=1e-5)


# ---- accumulation, clipping, mixed precision --------------------------------------------------------
def test_grad_accum_advances_schedule_per_optimizer_step():
    learn = Learner(small(bs=32, n_train=256), mlp(), CE, grad_accum=3, progress=False)  # 8 batches -> 3 steps
    s = one_cycle(1e-2, 6)
    learn.fit(2, sched=s)
    assert learn.step == 6 and len(learn.recorder.losses) == 16
    assert learn.recorder.lrs == list(s(np.arange(6))) and learn.recorder.moms == list(s.mom(np.arange(6)))


def test_grad_accum_equals_the_big_batch():
    "3 batches of 32 accumulated == one batch of 96, also for the smaller last group (224 = 96 + 96 + 32)."
    a = Learner(fixed_order(96), mlp(), CE, opt_func=torch.optim.SGD, progress=False)
    b = Learner(fixed_order(32), mlp(), CE, opt_func=torch.optim.SGD, grad_accum=3, progress=False)
    a.fit(2, lr=0.1); b.fit(2, lr=0.1)
    assert a.recorder.lrs == b.recorder.lrs and len(b.recorder.lrs) == 6
    for p, q in zip(a.model.parameters(), b.model.parameters()): torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_grad_clip_bounds_the_norm():
    class Norms(Callback):
        def __init__(self): self.raw, self.clipped, self.pairs = [], [], []
        def after_backward(self, learn): self.g = [p.grad.clone() for p in learn.model.parameters()]
        def before_step(self, learn):
            gs = [p.grad for p in learn.model.parameters()]
            raw = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in self.g]))
            self.raw.append(raw.item()); self.clipped.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs])).item())
            coef = min(1., 0.05 / (raw.item() + 1e-6))  # torch's rule: scale by max_norm / (norm + 1e-6) when above
            self.pairs.append(all(torch.allclose(g, g0 * coef, rtol=1e-5, atol=1e-8) for g, g0 in zip(gs, self.g)))
    learn, cb = Learner(small(), cnn(), CE, grad_clip=0.05, progress=False), Norms()
    learn.fit(1, lr=1e-2, cbs=cb)
    assert max(cb.raw) > 0.05                                 # clipping was needed ...
    assert max(cb.clipped) <= 0.05 * (1 + 1e-5) and all(cb.pairs)  # ... and bounded the norm by rescaling
    assert learn.grad_norm.item() == pytest.approx(cb.raw[-1], rel=1e-5)


def test_bf16_on_cpu_runs_and_records():
    class Dtype(Callback):
        def after_pred(self, learn): self.dtype = learn.pred.dtype
    learn, cb = Learner(small(), cnn(), CE, metrics=accuracy, mixed_precision=True, device='cpu', progress=False), Dtype()
    assert learn.amp_dtype is torch.bfloat16 and learn.scaler is None
    n = 2 * len(learn.dls.train)
    learn.fit_one_cycle(2, 1e-2, cbs=cb)
    assert cb.dtype is torch.bfloat16 and all(p.dtype is torch.float32 for p in learn.model.parameters())
    s = one_cycle(1e-2, n)
    assert learn.recorder.lrs == list(s(np.arange(n))) and learn.recorder.moms == list(s.mom(np.arange(n)))
    assert all(math.isfinite(l) for l in learn.recorder.losses) and len(learn.recorder.losses) == n
    assert np.mean(learn.recorder.losses[-4:]) < np.mean(learn.recorder.losses[:4])


def test_skipped_scaler_steps_neither_advance_the_schedule_nor_are_recorded():
    "A GradScaler (on CPU here) skips steps with inf gradients: the schedule waits for the next real step."
    class Poison(Callback):
        def after_backward(self, learn):
            if learn.iter in (2, 5): next(learn.model.parameters()).grad.fill_(float('inf'))
    learn = Learner(small(), mlp(), CE, device='cpu', progress=False)
    learn.scaler = torch.amp.GradScaler('cpu', init_scale=2. ** 10)
    n = len(learn.dls.train)
    s = cosine(1e-2, n)
    before = params(learn)
    learn.fit(1, sched=s, cbs=Poison())
    assert learn.step == n - 2 and learn.recorder.lrs == list(s(np.arange(n - 2)))
    assert len(learn.recorder.losses) == n and learn.scaler.get_scale() == 2. ** 8  # halved twice
    assert all(torch.isfinite(p).all() for p in learn.model.parameters()) and not same(before, params(learn))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fp16_with_grad_scaler_on_cuda():
    learn = Learner(small(), cnn(), CE, mixed_precision=True, device='cuda', progress=False)
    assert learn.amp_dtype is torch.float16 and learn.scaler is not None
    learn.fit_one_cycle(1, 1e-2)
    s = one_cycle(1e-2, len(learn.dls.train))
    assert learn.recorder.lrs == list(s(np.arange(learn.step)))
    assert all(math.isfinite(l) for l in learn.recorder.losses)


# ---- optimizer, freezing -------------------------------------------------------------------------------
def test_optimizer_kept_across_fits_and_rebuilt_for_new_parameters():
    learn = Learner(small(), cnn(), CE, progress=False)
    opt = learn.opt
    learn.fit(1); learn.fit(1)
    n = len(learn.dls.train)
    assert learn.opt is opt and all(s['step'].item() == 2 * n for s in opt.state.values())
    learn.model[-1] = nn.Linear(16, 10)  # a new head: its parameters are not in the optimizer
    learn.fit(1)
    assert learn.opt is not opt and {id(p) for p in learn.opt.param_groups[0]['params']} == {id(p) for p in learn.model.parameters()}


def test_freeze_trains_only_the_last_group_and_norm_layers():
    learn = Learner(small(), cnn(), CE, splitter=split_by_children(3), progress=False)
    learn.freeze()
    m, before = learn.model, params(learn)
    convs = [m[0].weight.detach().clone(), m[3].weight.detach().clone()]
    learn.fit(1, lr=1e-2)
    assert len(learn.opt.param_groups) == 3
    assert torch.equal(convs[0], m[0].weight) and torch.equal(convs[1], m[3].weight)
    assert not torch.equal(before[2], m[1].weight) and not torch.equal(before[-1], m[-1].bias)  # BN and head train
    learn.freeze_to(-1, train_bn=False)
    bn = [m[1].weight.detach().clone(), m[1].running_mean.clone()]
    learn.fit(1, lr=1e-2)
    assert torch.equal(bn[0], m[1].weight) and torch.equal(bn[1], m[1].running_mean)  # frozen BN: eval mode too
    learn.unfreeze()
    learn.fit(1, lr=1e-2)
    assert not torch.equal(convs[0], m[0].weight) and not torch.equal(bn[1], m[1].running_mean)


# ---- checkpoints and resume ---------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    learn = Learner(small(), cnn(), CE, metrics=accuracy, progress=False, path=tmp_path)
    learn.fit(1, lr=1e-2)
    file = learn.save('stage1')
    assert file == tmp_path / 'models' / 'stage1.pth' and file.exists()
    st, opt_st, rec = state(learn), {k: v['exp_avg'].clone() for k, v in learn.opt.state.items()}, learn.recorder.state_dict()
    learn.fit(1, lr=1e-2)
    assert not same(st, state(learn))
    learn.load('stage1')
    assert same(st, state(learn)) and learn.recorder.state_dict() == rec
    assert all(torch.equal(learn.opt.state[p]['exp_avg'], v) for p, v in opt_st.items())
    other = Learner(small(), cnn(seed=5), CE, progress=False, path=tmp_path).load('stage1', with_opt=False)
    assert same(st, state(other)) and len(other.opt.state) == 0


def _stop_after(epoch, exc):
    class Stop(Callback):
        order = 80  # after SaveModelCallback (70), so that epoch's checkpoint exists
        def after_epoch(self, learn):
            if learn.epoch == epoch: raise exc()
    return Stop()


@pytest.mark.parametrize('exc', [CancelFitException, KeyboardInterrupt])
@pytest.mark.parametrize('how', ['resume_from', 'load+start_epoch'])
def test_exact_resume(tmp_path, exc, how):
    "A fit stopped after epoch 1 and resumed from its checkpoint ends bit-identical to an uninterrupted fit."
    def make(seed):
        torch.manual_seed(seed)
        return Learner(small(), cnn(dropout=0.2), CE, metrics=accuracy, opt_func=torch.optim.SGD, grad_accum=2,
                       splitter=split_by_children(3), progress=False, path=tmp_path)
    def fit(learn, **kw): learn.fit_one_cycle(4, slice(1e-3, 5e-2), wd=1e-4, **kw)
    torch.manual_seed(1); full = make(1); fit(full)
    torch.manual_seed(1); stopped = make(1)
    try: fit(stopped, cbs=[SaveModelCallback(every_epoch=True), _stop_after(1, exc)])
    except KeyboardInterrupt: pass
    assert len(stopped.recorder.values) == 2
    resumed = make(99)
    np.random.rand(3); torch.rand(5)  # disturb every RNG: the checkpoint must carry them all
    if how == 'resume_from': fit(resumed, resume_from='model_1')
    else: resumed.load('model_1'); fit(resumed, start_epoch=2)
    assert same(state(full), state(resumed))
    r, f = resumed.recorder, full.recorder
    assert r.lrs == f.lrs and r.group_lrs == f.group_lrs and r.moms == f.moms and r.losses == f.losses
    assert [v for v in r.values] == [v for v in f.values] and len(r.lrs) == 4 * 4


def test_resume_refuses_other_fits(tmp_path):
    learn = Learner(small(), cnn(), CE, splitter=split_by_children(3), progress=False, path=tmp_path)
    learn.fit_one_cycle(2, slice(1e-4, 1e-2), cbs=[SaveModelCallback(every_epoch=True)])
    class MidEpoch(Callback):
        def after_batch(self, learn):
            if learn.iter == 2: learn.save('mid'); raise CancelFitException()
    learn.fit(1, cbs=MidEpoch())
    before, opt, rec = state(learn), learn.opt, learn.recorder.state_dict()
    with pytest.raises(ValueError, match='resume_from.*schedule'): learn.fit_one_cycle(2, slice(1e-4, 2e-2), resume_from='model_0')
    with pytest.raises(ValueError, match='resume_from.*ratios'): learn.fit_one_cycle(2, slice(1e-3, 1e-2), resume_from='model_0')
    with pytest.raises(ValueError, match='resume_from.*epochs'): learn.fit_one_cycle(3, slice(1e-4, 1e-2), resume_from='model_0')
    with pytest.raises(ValueError, match='resume_from.*finished'): learn.fit_one_cycle(2, slice(1e-4, 1e-2), resume_from='model_1')
    with pytest.raises(ValueError, match='resume_from.*epoch boundary'): learn.fit(2, resume_from='mid')
    with pytest.raises(FileNotFoundError, match='nope'): learn.fit(2, resume_from='nope')
    bad = Learner(small(), mlp(), CE, progress=False, path=tmp_path)
    with pytest.raises(ValueError, match='does not fit the model'): bad.load('model_0')
    assert same(before, state(learn)) and learn.opt is opt and learn.recorder.state_dict() == rec


def test_save_model_callback_keeps_the_best(tmp_path):
    learn = Learner(small(), cnn(), CE, metrics=accuracy, progress=False, path=tmp_path)
    cb = SaveModelCallback('best', monitor='accuracy')
    saves, save = [], learn.save
    learn.save = lambda *a, **k: saves.append(save(*a, **k)) or saves[-1]   # count every save
    learn.fit_one_cycle(3, 1e-2, cbs=cb)
    accs = [v[2] for v in learn.recorder.values]
    assert cb.best == max(accs) and (tmp_path / 'models' / 'best.pth').exists()
    # saved once per improvement, always to the same file; `saved` lists the distinct files written
    assert len(saves) == sum(a > max(accs[:i], default=-1) for i, a in enumerate(accs))
    assert [Path(f) for f in cb.saved] == [tmp_path / 'models' / 'best.pth'] and set(map(Path, saves)) == set(map(Path, cb.saved))
    with pytest.raises(ValueError, match='monitor'): learn.fit(1, cbs=SaveModelCallback(monitor='f1'))


def test_determinism():
    def run():
        torch.manual_seed(3)
        learn = Learner(small(), cnn(dropout=0.3), CE, metrics=accuracy, progress=False)
        learn.fit_one_cycle(2, 1e-2)
        return learn
    a, b = run(), run()
    assert same(state(a), state(b))
    assert a.recorder.losses == b.recorder.losses and a.recorder.values == b.recorder.values and a.recorder.lrs == b.recorder.lrs


# ---- progress ---------------------------------------------------------------------------------------
def test_text_table_in_a_terminal(capsys):
    learn = Learner(small(), mlp(), CE, metrics=accuracy, progress=False)
    learn.fit(2, cbs=ProgressCallback(bar=False))
    lines = capsys.readouterr().out.strip().split('\n')
    assert lines[0].split() == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time'] and len(lines) == 3
    assert [float(c) for c in lines[2].split()[1:4]] == pytest.approx(learn.recorder.values[1], abs=1e-6)


def test_html_table_updates_one_output(monkeypatch):
    import IPython.display
    import cyclr.progress as P
    shown = []
    class Handle:
        def update(self, obj): shown.append(obj.data)
    monkeypatch.setattr(P, '_in_notebook', lambda: True)
    monkeypatch.setattr(IPython.display, 'display', lambda obj, display_id=None: shown.append(obj.data) or Handle())
    learn = Learner(small(), mlp(), CE, progress=False)
    learn.fit(2, cbs=ProgressCallback(bar=False))
    assert len(shown) == 3 and shown[-1].count('<tr') == 3 and '<th>valid_loss</th>' in shown[-1]


def test_progress_false_prints_nothing(capsys):
    Learner(small(), mlp(), CE, progress=False).fit(1)
    out = capsys.readouterr()
    assert out.out == '' and out.err == ''


# ---- overfit_batch and lr_find -----------------------------------------------------------------------
def test_overfit_batch_drives_the_loss_near_zero_and_restores():
    learn = Learner(small(), cnn(), CE, progress=False)
    before, rng = params(learn), torch.get_rng_state()
    res = learn.overfit_batch(100, lr=1e-2)
    assert isinstance(res, OverfitResult) and res.passed and res.final_loss < 0.02 * res.initial_loss
    assert len(res.losses) == 100 and res.initial_loss > 1.5  # ~ln(10) for an untrained 10-class model
    assert same(before, params(learn)) and torch.equal(rng, torch.get_rng_state()) and len(learn.opt.state) == 0
    slow = learn.overfit_batch(5, lr=1e-7)
    assert not slow.passed
    learn.overfit_batch(3, lr=1e-2, restore=False)
    assert not same(before, params(learn))


@pytest.mark.parametrize('grad_accum', [1, 2])
def test_lr_find_uses_the_learner_step_and_leaves_the_recorder(grad_accum):
    learn = Learner(small(), cnn(), CE, grad_accum=grad_accum, grad_clip=1., progress=False)
    learn.fit(1, lr=1e-3)
    rec, before = learn.recorder.state_dict(), state(learn)
    res = learn.lr_find(start_lr=1e-5, end_lr=1e-1, num_it=12, show_plot=False)
    assert len(res.lrs) == 12 and np.all(np.diff(res.lrs) > 0)
    assert learn.recorder.state_dict() == rec and same(before, state(learn))


# ---- bad input ---------------------------------------------------------------------------------------
def _empty_dl(): return DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)

BAD_INIT = [
    (dict(dls=(_empty_dl(),)), ValueError, 'dls'),
    (dict(dls=42), TypeError, 'dls'),
    (dict(model='cnn'), TypeError, 'model'),
    (dict(loss_func=3), TypeError, 'loss_func'),
    (dict(opt_func='adam'), TypeError, 'opt_func'),
    (dict(lr=0.), ValueError, 'lr'), (dict(lr=-1e-3), ValueError, 'lr'), (dict(lr=float('nan')), ValueError, 'lr'),
    (dict(lr=float('inf')), ValueError, 'lr'), (dict(lr='fast'), TypeError, 'lr'),
    (dict(metrics=[accuracy, 'f1']), TypeError, 'metrics'), (dict(metrics=1), TypeError, 'metrics'),
    (dict(wd=-0.1), ValueError, 'wd'),
    (dict(grad_clip=0), ValueError, 'grad_clip'), (dict(grad_clip=-1.), ValueError, 'grad_clip'),
    (dict(grad_clip=float('nan')), ValueError, 'grad_clip'),
    (dict(grad_accum=0), ValueError, 'grad_accum'), (dict(grad_accum=1.5), TypeError, 'grad_accum'),
    (dict(grad_accum=True), TypeError, 'grad_accum'),
    (dict(mixed_precision='fp8'), ValueError, 'mixed_precision'),
    (dict(mixed_precision='fp16', device='cpu'), ValueError, 'mixed_precision'),
    (dict(device='gpu7'), ValueError, 'device'),
    (dict(cbs=[SaveModelCallback]), TypeError, 'cbs'), (dict(cbs=[1]), TypeError, 'cbs'),
    (dict(progress='yes'), TypeError, 'progress'),
    (dict(opt_func=torch.optim.Adagrad, wd=None, lr=slice(1e-2, 1e-4)), ValueError, 'lr'),
]

@pytest.mark.parametrize('kwargs,exc,name', BAD_INIT)
def test_bad_constructor_arguments(kwargs, exc, name):
    model = cnn()
    before = [p.clone() for p in model.parameters()]
    args = dict(dls=small(), model=model, loss_func=CE) | kwargs
    with pytest.raises(exc, match=f'`{name}'): Learner(**args)
    assert same(before, [p.clone() for p in model.parameters()])


def test_wd_needs_an_optimizer_with_weight_decay():
    class NoWD(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-3): super().__init__(params, dict(lr=lr))
        def step(self, closure=None): pass
    with pytest.raises(ValueError, match='`wd`'): Learner(small(), mlp(), CE, opt_func=NoWD, wd=0.1)
    learn = Learner(small(), mlp(), CE, opt_func=NoWD, progress=False)
    with pytest.raises(ValueError, match='`wd`'): learn.fit(1, wd=0.1)


BAD_CALLS = [
    ('fit', dict(n_epoch=0), ValueError, 'n_epoch'), ('fit', dict(n_epoch=-1), ValueError, 'n_epoch'),
    ('fit', dict(n_epoch=1.5), TypeError, 'n_epoch'), ('fit', dict(n_epoch='2'), TypeError, 'n_epoch'),
    ('fit', dict(n_epoch=True), TypeError, 'n_epoch'),
    ('fit', dict(n_epoch=1, lr=0), ValueError, 'lr'), ('fit', dict(n_epoch=1, lr=-1e-3), ValueError, 'lr'),
    ('fit', dict(n_epoch=1, lr=float('nan')), ValueError, 'lr'), ('fit', dict(n_epoch=1, lr=float('inf')), ValueError, 'lr'),
    ('fit', dict(n_epoch=1, lr=slice(1e-2, 1e-4)), ValueError, 'lr'), ('fit', dict(n_epoch=1, lr=[1e-3, 1e-2]), ValueError, 'lr'),
    ('fit', dict(n_epoch=2, start_epoch=2), ValueError, 'start_epoch'), ('fit', dict(n_epoch=2, start_epoch=-1), ValueError, 'start_epoch'),
    ('fit', dict(n_epoch=1, wd=-1.), ValueError, 'wd'), ('fit', dict(n_epoch=1, cbs=[object()]), TypeError, 'cbs'),
    ('fit', dict(n_epoch=1, sched='one_cycle'), TypeError, 'sched'),
    ('fit', dict(n_epoch=1, sched=lambda it: -np.ones_like(it)), ValueError, 'sched'),
    ('fit_one_cycle', dict(n_epoch=1, lr_max=-1.), ValueError, 'lr_max'),
    ('fit_one_cycle', dict(n_epoch=1, pct_start=1.5), ValueError, 'pct_start'),
    ('fit_one_cycle', dict(n_epoch=1, div=0), ValueError, 'div'),
    ('fit_one_cycle', dict(n_epoch=0), ValueError, 'n_epoch'),
    ('fit_clr', dict(n_epoch=1, base_lr=1e-2, max_lr=1e-3), ValueError, 'base_lr'),
    ('fit_clr', dict(n_epoch=1, base_lr=1e-4, max_lr=1e-2, step_size=0), ValueError, 'step_size'),
    ('fit_clr', dict(n_epoch=1, base_lr=1e-4, max_lr=1e-2, mode='sawtooth'), ValueError, 'mode'),
    ('fit_sgdr', dict(n_cycles=0, cycle_len=1), ValueError, 'n_cycles'),
    ('fit_sgdr', dict(n_cycles=2, cycle_len=0), ValueError, 'cycle_len'),
    ('fit_sgdr', dict(n_cycles=2, cycle_len=1, cycle_mult=0), ValueError, 'cycle_mult'),
    ('fit_sgdr', dict(n_cycles=2, cycle_len=1, lr_max=1e-3, eta_min=1e-2), ValueError, 'eta_min'),
    ('fit_flat_cos', dict(n_epoch=1, pct_start=0.), ValueError, 'pct_start'),
    ('fine_tune', dict(epochs=0), ValueError, 'epochs'), ('fine_tune', dict(epochs=1, freeze_epochs=-1), ValueError, 'freeze_epochs'),
    ('fine_tune', dict(epochs=1, base_lr=0.), ValueError, 'base_lr'), ('fine_tune', dict(epochs=1, lr_mult=0.5), ValueError, 'lr_mult'),
    ('overfit_batch', dict(n_steps=0), ValueError, 'n_steps'), ('overfit_batch', dict(tol=0.), ValueError, 'tol'),
    ('overfit_batch', dict(lr=-1.), ValueError, 'lr'),
    ('validate', dict(dl=_empty_dl()), ValueError, 'dl'),
    ('freeze_to', dict(n=5), ValueError, 'n'),
]

@pytest.mark.parametrize('method,kwargs,exc,name', BAD_CALLS)
def test_bad_calls_leave_everything_untouched(method, kwargs, exc, name):
    learn = Learner(small(), cnn(), CE, splitter=split_by_children(3), progress=False)
    learn.fit(1, lr=1e-3)
    st, opt, rec = state(learn), learn.opt, learn.recorder.state_dict()
    opt_st = {k: {n: v.clone() for n, v in s.items()} for k, s in opt.state.items()}
    hypers = [{k: v for k, v in g.items() if k != 'params'} for g in opt.param_groups]
    grads = [p.requires_grad for p in learn.model.parameters()]
    with pytest.raises(exc, match=f'`{name}'): getattr(learn, method)(**kwargs)
    assert same(st, state(learn)) and learn.opt is opt and learn.recorder.state_dict() == rec
    assert all(torch.equal(v, opt.state[k][n]) for k, s in opt_st.items() for n, v in s.items())
    assert hypers == [{k: v for k, v in g.items() if k != 'params'} for g in opt.param_groups]
    assert grads == [p.requires_grad for p in learn.model.parameters()] and not learn.in_fit


def test_settings_changed_after_init_are_checked_by_fit():
    learn = Learner(small(), mlp(), CE, progress=False)
    learn.grad_accum = 0
    with pytest.raises(ValueError, match='`grad_accum`'): learn.fit(1)
    learn.grad_accum, learn.grad_clip = 1, -1.
    with pytest.raises(ValueError, match='`grad_clip`'): learn.fit(1)
    assert learn.recorder.lrs == []


def test_a_momentum_schedule_on_an_optimizer_without_momentum_names_moms():
    "Adagrad and Rprop have neither `momentum` nor Adam's betas: one cycle's momentum would be silently half-applied."
    for opt_func in (torch.optim.Adagrad, torch.optim.Rprop):
        learn = Learner(small(), cnn(), CE, opt_func=opt_func, progress=False)
        before = [p.detach().clone() for p in learn.model.parameters()]
        with pytest.raises(ValueError, match=r"`moms` must be None for (Adagrad|Rprop), which has no momentum"):
            learn.fit_one_cycle(1, 1e-2)
        assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters())) and learn.recorder.lrs == []
        learn.fit_one_cycle(1, 1e-2, moms=None)            # the fix the message names works
        assert len(learn.recorder.lrs) > 0 and all(np.isnan(learn.recorder.moms))


def test_a_model_moved_after_construction_is_named():
    learn = Learner(small(), cnn(), CE, progress=False)
    learn.model.to('meta')
    with pytest.raises(ValueError, match=r"`model` is on meta but the Learner sends its batches to cpu"):
        learn.fit(1)
