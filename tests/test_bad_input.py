"""Bad input at every public entry point: a TypeError/ValueError whose message names the parameter (in backticks) and
what it allows, and a Learner, model and optimizer left exactly as they were (bit-exact). The CLI: a non-zero exit
status and one line on stderr, no traceback. (tests/test_learner.py and tests/test_lr_find.py hold more Learner and
lr_find cases; this table runs across the modules with the strict state comparison.) One wording throughout
(cyclr.checks): "`name` must be WHAT, got GOT"; `test_same_bad_int_gives_the_same_error_everywhere` holds every
integer parameter of every public entry point to the same class and words for the same bad value."""
import copy
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cyclr import cli
from cyclr import schedules as S
from cyclr.data import DataLoaders, digits, image_folder
from cyclr.discriminative import (freeze_to, group_param_dicts, set_bn_eval, small_resnet, split_by_children, split_params,
                                  spread_lrs)
from cyclr.distributed import init_distributed, shard_loader
from cyclr.callback import SaveModelCallback
from cyclr.learner import Learner
from cyclr.recorder import Recorder
from cyclr.lr_find import lr_find, smooth_losses, sweep_lrs
from cyclr.metrics import top_k_accuracy
from cyclr.models import simple_cnn
from cyclr.policies import POLICIES
from _helpers import assert_same

from cyclr.widgets import lr_find_picker, schedule_explorer

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float('nan'), float('inf')
CE = nn.CrossEntropyLoss()


def cnn():
    with torch.random.fork_rng(devices=[]):  # building one in a bad call must not look like a changed RNG state
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, 10))


def empty_dl(): return DataLoader(TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=4)
def data(): return digits(bs=32, n_train=64)


@pytest.fixture
def learn():
    "A Learner with history: trained (SGD momentum buffers, BN statistics, a Recorder), weight decay, one group frozen."
    learn = Learner(data(), cnn(), CE, opt_func=torch.optim.SGD, splitter=split_by_children(3), wd=1e-4, progress=False)
    learn.fit_one_cycle(1, slice(1e-3, 1e-2))
    learn.freeze_to(1)
    return learn


def state(learn):
    "Deep copies of everything a rejected call must leave alone."
    opt = learn.opt
    return dict(model={k: v.clone() for k, v in learn.model.state_dict().items()},
                opt_state={id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in opt.state.items()},
                hypers=[{k: copy.deepcopy(v) for k, v in g.items() if k != 'params'} for g in opt.param_groups],
                groups=[[id(p) for p in g['params']] for g in opt.param_groups], opt_id=id(opt),
                requires_grad=[p.requires_grad for p in learn.model.parameters()],
                grads=[None if p.grad is None else p.grad.clone() for p in learn.model.parameters()],
                modes=[m.training for m in learn.model.modules()],
                recorder=learn.recorder.state_dict(), n_losses=len(learn.recorder.losses), n_lrs=len(learn.recorder.lrs),
                attrs=dict(step=learn.step, epoch=learn.epoch, n_epoch=learn.n_epoch, frozen=learn._frozen, lr=learn.lr,
                           wd=learn.wd, in_fit=learn.in_fit, cbs=list(learn.cbs), fit=learn._fit_position()),
                rng=(torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()),
                gen=learn.dls.train.generator.get_state())




def case(id, call, exc, *words, xfail=None, skip=None):
    "A bad call `call(learn)` that must raise `exc` with every one of `words` in its message."
    marks = ([pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []) + \
            ([pytest.mark.skipif(True, reason=skip)] if skip else [])
    return pytest.param(call, exc, words, id=id, marks=marks)


MOMS_RANGE = ('momentums must be in [0, 1) (torch.optim.Adam refuses beta1=1; fit refuses a schedule that reaches momentum 1: '
              '"`sched` must be a schedule of momentums in [0, 1) at every step"), but schedules._momentums checks the closed '
              '[0, 1]: "`moms` must be a finite number in [0, 1], got 1.2", and moms=(.95, 1., .95) is accepted')
LOAD_NAME = ('Learner.load(missing) raises FileNotFoundError "no checkpoint \'models/no_such_checkpoint.pth\'" without naming '
             '`name` (HEAD said "(from `name`=...)"); cyclr.checkpoint.read_checkpoint gives the bare message')

CASES = [
    # ---- schedules (cyclr.schedules)
    case('one_cycle lr_max=0', lambda l: S.one_cycle(0, 100), ValueError, '`lr_max`', '> 0'),
    case('one_cycle lr_max=-1', lambda l: S.one_cycle(-1e-2, 100), ValueError, '`lr_max`', '> 0'),
    case('one_cycle lr_max=nan', lambda l: S.one_cycle(NAN, 100), ValueError, '`lr_max`', '> 0'),
    case('one_cycle lr_max=inf', lambda l: S.one_cycle(INF, 100), ValueError, '`lr_max`', '> 0'),
    case('constant lr=inf', lambda l: S.constant(INF), ValueError, '`lr`', '> 0'),
    case('one_cycle lr_max str', lambda l: S.one_cycle('1e-2', 100), TypeError, '`lr_max`', 'number > 0', "got str '1e-2'"),
    case('one_cycle pct_start=1', lambda l: S.one_cycle(1e-2, 100, pct_start=1.), ValueError, '`pct_start`', '(0, 1)'),
    case('one_cycle pct_start=0', lambda l: S.one_cycle(1e-2, 100, pct_start=0.), ValueError, '`pct_start`', '(0, 1)'),
    case('one_cycle div=0', lambda l: S.one_cycle(1e-2, 100, div=0), ValueError, '`div`', '> 0'),
    case('one_cycle div_final<0', lambda l: S.one_cycle(1e-2, 100, div_final=-1), ValueError, '`div_final`', '> 0'),
    case('one_cycle total_steps=0', lambda l: S.one_cycle(1e-2, 0), ValueError, '`total_steps`', '>= 1'),
    case('one_cycle moms>1', lambda l: S.one_cycle(1e-2, 100, moms=(.9, 1.2, .9)), ValueError, '`moms`', '[0, 1)'),
    case('one_cycle moms=1 (Adam and fit refuse it)', lambda l: S.one_cycle(1e-2, 100, moms=(.95, 1., .95)), ValueError, '`moms`', '[0, 1)'),
    case('cyclic base_lr>max_lr', lambda l: S.cyclic(1e-2, 1e-3), ValueError, '`base_lr`', '<= `max_lr`'),
    case('cyclic step_size=0', lambda l: S.cyclic(1e-3, 1e-2, step_size=0), ValueError, '`step_size`', '>= 1'),
    case('cyclic step_size<0', lambda l: S.cyclic(1e-3, 1e-2, step_size=-5), ValueError, '`step_size`', '>= 1'),
    case('cyclic gamma=0', lambda l: S.cyclic(1e-3, 1e-2, mode='exp_range', gamma=0.), ValueError, '`gamma`', '(0, 1]'),
    case('cyclic gamma<0', lambda l: S.cyclic(1e-3, 1e-2, mode='exp_range', gamma=-.5), ValueError, '`gamma`', '(0, 1]'),
    case('cyclic unknown mode', lambda l: S.cyclic(1e-3, 1e-2, mode='sawtooth'), ValueError, '`mode`', "'triangular2'"),
    case('sgdr T_mult<1', lambda l: S.sgdr(1e-2, 10, T_mult=.5), ValueError, '`T_mult`', '>= 1'),
    case('sgdr T_0=0', lambda l: S.sgdr(1e-2, 0), ValueError, '`T_0`', '>= 1'),
    case('sgdr eta_min>lr_max', lambda l: S.sgdr(1e-2, 10, eta_min=1.), ValueError, '`eta_min`', '<= `lr_max`'),
    case('step_decay gamma=0', lambda l: S.step_decay(1e-2, step_size=10, gamma=0.), ValueError, '`gamma`', '> 0'),
    case('cosine total_steps=0', lambda l: S.cosine(1e-2, 0), ValueError, '`total_steps`', '>= 1'),
    case('flat_cos pct_start=0', lambda l: S.flat_cos(1e-2, 100, pct_start=0.), ValueError, '`pct_start`', '(0, 1)'),
    case('warmup schedule str', lambda l: S.warmup('one_cycle', 10), TypeError, '`schedule`', 'Schedule'),
    case('Schedule it<0', lambda l: S.cosine(1e-2, 10)(-1), ValueError, '`it`', '>= 0'),
    case('combine_scheds pcts', lambda l: S.combine_scheds([.5, .6], [S.SchedLin(1, 2), S.SchedCos(2, 1)]), ValueError, '`pcts`', 'sum to 1'),
    case('to_torch group_mults', lambda l: S.cosine(1e-2, 10).to_torch(l.opt, group_mults=[1.]), ValueError, '`group_mults`', '(3)'),
    # ---- layer groups (cyclr.discriminative)
    case('spread_lrs slice lo>hi', lambda l: spread_lrs(slice(1e-2, 1e-4), 3), ValueError, '`lr`', 'lo <= hi'),
    case('spread_lrs more LRs than groups', lambda l: spread_lrs([1e-3] * 4, 3), ValueError, '`lr`', 'one per group'),
    case('spread_lrs slice step', lambda l: spread_lrs(slice(1e-3, 1e-2, 2), 3), ValueError, '`lr`', 'slice(lo, hi)'),
    case('spread_lrs nan', lambda l: spread_lrs(NAN, 3), ValueError, '`lr`', 'finite number > 0'),
    case('spread_lrs str', lambda l: spread_lrs('1e-3', 3), TypeError, '`lr`', 'number > 0', 'got str'),
    case('spread_lrs n_groups=0', lambda l: spread_lrs(1e-3, 0), ValueError, '`n_groups`', '>= 1'),
    case('group_param_dicts slice lo>hi', lambda l: group_param_dicts(l._groups(), slice(1., .1)), ValueError, '`lr`', 'lo <= hi'),
    case('split_by_children n=0', lambda l: split_by_children(0), ValueError, '`n`', '>= 1'),
    case('split_by_children more groups than children', lambda l: split_params(l.model, split_by_children(9)), ValueError, '`n`', '[1, 3]'),
    case('splitter misses parameters', lambda l: split_params(l.model, lambda m: [list(m.parameters())[:1]]), ValueError, '`splitter(model)`', 'exactly once'),
    case('freeze_to n out of range', lambda l: freeze_to(l.model, l._groups(), 4), ValueError, '`n`', '[-3, 3]'),
    case('freeze_to train_bn str', lambda l: freeze_to(l.model, l._groups(), 1, train_bn='yes'), TypeError, '`train_bn`', 'True or False'),
    case('set_bn_eval n out of range', lambda l: set_bn_eval(l.model, l._groups(), -4), ValueError, '`n`', '[-3, 3]'),
    # ---- data
    case('digits bs=0', lambda l: digits(bs=0), ValueError, '`bs`', '>= 1'),
    case('digits valid_pct=1.5', lambda l: digits(valid_pct=1.5), ValueError, '`valid_pct`', '(0, 1)'),
    case('digits classes out of range', lambda l: digits(classes=[11]), ValueError, '`classes`', '[0, 9]'),
    case('digits n_train=0', lambda l: digits(n_train=0), ValueError, '`n_train`', '>= 1'),
    case('DataLoaders empty train', lambda l: DataLoaders(empty_dl()), ValueError, '`train`', 'at least 1 batch'),
    case('DataLoaders.from_dsets empty', lambda l: DataLoaders.from_dsets(TensorDataset(torch.zeros(0, 2))), ValueError, '`train_ds`', 'at least 1 item'),
    # ---- the Learner's constructor
    case('Learner empty train', lambda l: Learner((empty_dl(),), cnn(), CE), ValueError, '`dls`', 'at least 1 batch'),
    case('Learner lr slice lo>hi', lambda l: Learner(data(), cnn(), CE, lr=slice(1e-2, 1e-4)), ValueError, '`lr`', 'lo <= hi'),
    case('Learner more LRs than groups', lambda l: Learner(data(), cnn(), CE, lr=[1e-3] * 2), ValueError, '`lr`', 'one per group'),
    case('Learner splitter with too many groups', lambda l: Learner(data(), cnn(), CE, splitter=split_by_children(9)), ValueError, '`splitter`', '[1, 3]'),
    case('Learner grad_clip nan', lambda l: Learner(data(), cnn(), CE, grad_clip=NAN), ValueError, '`grad_clip`', '> 0'),
    case('Learner grad_accum=0', lambda l: Learner(data(), cnn(), CE, grad_accum=0), ValueError, '`grad_accum`', '>= 1'),
    case('Learner model str', lambda l: Learner(data(), 'resnet', CE), TypeError, '`model`', 'nn.Module'),
    case('Recorder beta=1', lambda l: Recorder(beta=1.), ValueError, '`beta`', '[0, 1)'),
    case('SaveModelCallback every_epoch str', lambda l: SaveModelCallback(every_epoch='yes'), TypeError, '`every_epoch`', 'True or False'),
    # ---- fit and the fit policies (on a trained Learner: its state is compared after each call)
    case('fit lr=inf', lambda l: l.fit(1, lr=INF), ValueError, '`lr`', 'finite number > 0'),
    case('fit lr=0', lambda l: l.fit(1, lr=0.), ValueError, '`lr`', 'finite number > 0'),
    case('fit more LRs than groups', lambda l: l.fit(1, lr=[1e-3] * 4), ValueError, '`lr`', 'one per group'),
    case('fit n_epoch str', lambda l: l.fit('1'), TypeError, '`n_epoch`', '>= 1', "got str '1'"),
    case('fit n_epoch=2.0 (an integer parameter refuses floats)', lambda l: l.fit(2.), TypeError, '`n_epoch`', 'an integer >= 1', 'got float 2.0'),
    case('fit n_epoch=True (bool is never a number)', lambda l: l.fit(True), TypeError, '`n_epoch`', 'an integer >= 1', 'got bool True'),
    case('fit wd=True (bool is never a number)', lambda l: l.fit(1, wd=True), TypeError, '`wd`', '>= 0', 'got bool True'),
    case('fit lr=True (bool is never a number)', lambda l: l.fit(1, lr=True), TypeError, '`lr`', 'number > 0', 'got bool True'),
    case('fit wd<0', lambda l: l.fit(1, wd=-1e-4), ValueError, '`wd`', '>= 0'),
    case('fit monitor unknown', lambda l: l.fit(1, cbs=SaveModelCallback(monitor='f1')), ValueError, '`monitor`', "'valid_loss'"),
    case('fit_one_cycle lr_max=nan', lambda l: l.fit_one_cycle(1, lr_max=NAN), ValueError, '`lr_max`', 'finite number > 0'),
    case('fit_one_cycle lr_max=-1', lambda l: l.fit_one_cycle(1, lr_max=-1.), ValueError, '`lr_max`', 'finite number > 0'),
    case('fit_one_cycle pct_start=0', lambda l: l.fit_one_cycle(1, pct_start=0.), ValueError, '`pct_start`', '(0, 1)'),
    case('fit_one_cycle pct_start=1.5', lambda l: l.fit_one_cycle(1, pct_start=1.5), ValueError, '`pct_start`', '(0, 1)'),
    case('fit_one_cycle div<0', lambda l: l.fit_one_cycle(1, div=-1.), ValueError, '`div`', '> 0'),
    case('fit_one_cycle div_final=0', lambda l: l.fit_one_cycle(1, div_final=0.), ValueError, '`div_final`', '> 0'),
    case('fit_one_cycle moms>1', lambda l: l.fit_one_cycle(1, moms=(.95, 1.5, .95)), ValueError, '`moms`', '[0, 1)'),
    case('fit_one_cycle slice lo>hi', lambda l: l.fit_one_cycle(1, lr_max=slice(1e-2, 1e-3)), ValueError, '`lr_max`', 'lo <= hi'),
    case('fit_one_cycle more LRs than groups', lambda l: l.fit_one_cycle(1, lr_max=[1e-3] * 5), ValueError, '`lr_max`', 'one per group'),
    case('fit_clr base_lr<0', lambda l: l.fit_clr(1, base_lr=-1., max_lr=1e-2), ValueError, '`base_lr`', '> 0'),
    case('fit_clr base_lr>max_lr', lambda l: l.fit_clr(1, base_lr=1., max_lr=1e-2), ValueError, '`base_lr`', '<= `max_lr`'),
    case('fit_clr gamma=0', lambda l: l.fit_clr(1, 1e-4, 1e-2, mode='exp_range', gamma=0.), ValueError, '`gamma`', '(0, 1]'),
    case('fit_clr step_size<0', lambda l: l.fit_clr(1, 1e-4, 1e-2, step_size=-3), ValueError, '`step_size`', '>= 1'),
    case('fit_clr unknown mode', lambda l: l.fit_clr(1, 1e-4, 1e-2, mode='cosine'), ValueError, '`mode`', "'exp_range'"),
    case('fit_sgdr cycle_mult float', lambda l: l.fit_sgdr(1, 1, cycle_mult=1.5), TypeError, '`cycle_mult`', '>= 1', 'got float 1.5'),
    case('fit_sgdr cycle_mult=0', lambda l: l.fit_sgdr(2, 1, cycle_mult=0), ValueError, '`cycle_mult`', '>= 1'),
    case('fit_sgdr lr_max=0', lambda l: l.fit_sgdr(1, 1, lr_max=0.), ValueError, '`lr_max`', 'finite number > 0'),
    case('fit_flat_cos pct_start=1', lambda l: l.fit_flat_cos(1, pct_start=1.), ValueError, '`pct_start`', '(0, 1)'),
    case('fit_flat_cos lr str', lambda l: l.fit_flat_cos(1, lr='fast'), TypeError, '`lr`', 'number > 0', 'got str'),
    case('fine_tune base_lr=nan', lambda l: l.fine_tune(1, base_lr=NAN), ValueError, '`base_lr`', '> 0'),
    case('fine_tune pct_start=1.2', lambda l: l.fine_tune(1, pct_start=1.2), ValueError, '`pct_start`', '(0, 1)'),
    case('fine_tune div=0', lambda l: l.fine_tune(1, div=0), ValueError, '`div`', '> 0'),
    case('fine_tune wd<0 (must not freeze first)', lambda l: l.fine_tune(1, wd=-1.), ValueError, '`wd`', '>= 0'),
    case('fine_tune monitor unknown (must not freeze first)', lambda l: l.fine_tune(1, cbs=SaveModelCallback(monitor='f1')), ValueError, '`monitor`', "'valid_loss'"),
    case('overfit_batch n_steps=0', lambda l: l.overfit_batch(0), ValueError, '`n_steps`', '>= 1'),
    # ---- freezing, callbacks, validation, checkpoints on the Learner
    case('Learner.freeze_to(-4) with 3 groups', lambda l: l.freeze_to(-4), ValueError, '`n`', '[-3, 3]'),
    case('Learner.freeze_to(1.5)', lambda l: l.freeze_to(1.5), TypeError, '`n`', '[-3, 3]', 'got float 1.5'),
    case('Learner.freeze_to train_bn', lambda l: l.freeze_to(1, train_bn=None), TypeError, '`train_bn`', 'True or False'),
    case('Learner.add_cb class', lambda l: l.add_cb(SaveModelCallback), TypeError, '`cb`', 'Callback instances'),
    case('Learner.remove_cb unknown', lambda l: l.remove_cb(SaveModelCallback()), ValueError, '`cb`', "Learner's callbacks"),
    case('Learner.validate empty', lambda l: l.validate(empty_dl()), ValueError, '`dl`', 'at least 1 batch'),
    case('Learner.validate int', lambda l: l.validate(5), TypeError, '`dl`', 'DataLoader'),
    case('Learner.get_preds empty', lambda l: l.get_preds(empty_dl()), ValueError, '`dl`', 'at least 1 batch'),
    case('Learner.save name None', lambda l: l.save(None), TypeError, '`name`', 'non-empty str'),
    case('Learner.load missing file', lambda l: l.load('no_such_checkpoint'), FileNotFoundError, '`name`', 'no_such_checkpoint'),
    # ---- the range test: Learner.lr_find and lr_find
    case('Learner.lr_find start_lr>=end_lr', lambda l: l.lr_find(start_lr=1., end_lr=1e-3), ValueError, '`start_lr`', '< `end_lr`'),
    case('Learner.lr_find start_lr=end_lr', lambda l: l.lr_find(start_lr=1e-2, end_lr=1e-2), ValueError, '`start_lr`', '< `end_lr`'),
    case('Learner.lr_find num_it=1', lambda l: l.lr_find(num_it=1), ValueError, '`num_it`', '>= 2'),
    case('Learner.lr_find unknown mode', lambda l: l.lr_find(mode='cosine'), ValueError, '`mode`', "one of 'exp', 'linear'"),
    case('Learner.lr_find start_lr=0', lambda l: l.lr_find(start_lr=0.), ValueError, '`start_lr`', '> 0'),
    case('Learner.lr_find end_lr=nan', lambda l: l.lr_find(end_lr=NAN), ValueError, '`end_lr`', '> 0'),
    case('Learner.lr_find end_lr=inf', lambda l: l.lr_find(end_lr=INF), ValueError, '`end_lr`', '> 0'),
    case('Learner.lr_find n_runs=0', lambda l: l.lr_find(n_runs=0), ValueError, '`n_runs`', '>= 1'),
    case('Learner.lr_find beta=1', lambda l: l.lr_find(beta=1.), ValueError, '`beta`', '[0, 1)'),
    case('Learner.lr_find unknown argument', lambda l: l.lr_find(epochs=3), TypeError, '`epochs`', 'start_lr'),
    case('Learner.lr_find extra_state int', lambda l: l.lr_find(extra_state=5), TypeError, '`extra_state`', 'list or tuple'),
    case('lr_find empty train_dl', lambda l: lr_find(l.model, empty_dl(), CE, l.opt), ValueError, '`train_dl`', 'at least 1 batch'),
    case('lr_find num_it float', lambda l: lr_find(l.model, l.dls.train, CE, l.opt, num_it=10.), TypeError, '`num_it`', '>= 2', 'got float 10.0'),
    case('lr_find div_th=1', lambda l: lr_find(l.model, l.dls.train, CE, l.opt, div_th=1.), ValueError, '`div_th`', '> 1'),
    case('lr_find before_run not callable', lambda l: lr_find(l.model, l.dls.train, CE, l.opt, before_run=3), TypeError, '`before_run`', 'function'),
    case('sweep_lrs start>=end', lambda l: sweep_lrs(1., .1, 10), ValueError, '`start_lr`', '< `end_lr`'),
    case('smooth_losses beta<0', lambda l: smooth_losses([1., 2.], beta=-.1), ValueError, '`beta`', '[0, 1)'),
    # ---- distributed helpers
    case('shard_loader rank>=world_size', lambda l: shard_loader(l.dls.train, rank=3, world_size=2), ValueError, '`rank`', '[0, 1]'),
    case('shard_loader world_size=0', lambda l: shard_loader(l.dls.train, rank=0, world_size=0), ValueError, '`world_size`', '>= 1'),
    case('init_distributed unknown backend', lambda l: init_distributed(backend='tcp'), ValueError, '`backend`', "'gloo'"),
    case('init_distributed timeout_s=0', lambda l: init_distributed(timeout_s=0), ValueError, '`timeout_s`', '> 0'),
    # ---- widgets
    case('schedule_explorer unknown policy', lambda l: schedule_explorer(policy='nope'), ValueError, '`policy`', 'one of ' + ', '.join(map(repr, POLICIES)), "got 'nope'"),
    case('schedule_explorer total_steps=1', lambda l: schedule_explorer(total_steps=1), ValueError, '`total_steps`', '>= 2'),
    case('schedule_explorer lr_max<0', lambda l: schedule_explorer(lr_max=-1.), ValueError, '`lr_max`', '> 0'),
    case('schedule_explorer pct_start=1.5', lambda l: schedule_explorer(pct_start=1.5), ValueError, '`pct_start`', '(0, 1)'),
    case('schedule_explorer unknown parameter', lambda l: schedule_explorer(bogus=1), ValueError, '`bogus`', 'lr_max'),
]


@pytest.mark.parametrize('call,exc,words', CASES)
def test_bad_call_names_the_parameter_and_changes_nothing(learn, call, exc, words):
    before = state(learn)
    with pytest.raises(exc) as e: call(learn)
    msg = str(e.value)
    for w in words: assert w in msg, (w, msg)
    assert_same(state(learn), before)


def test_bad_lr_find_after_the_optimizer_was_replaced_keeps_the_old_one(learn):
    "`opt_func` changed: a valid test would build a new optimizer; a rejected one must not have swapped it in."
    learn.opt_func = torch.optim.Adam
    before = state(learn)
    with pytest.raises(ValueError, match='`num_it`'): learn.lr_find(num_it=1)
    with pytest.raises(KeyboardInterrupt): _interrupted_lr_find(learn)  # nor an interrupted one
    assert_same(state(learn), before)


def _interrupted_lr_find(learn):
    real = learn.loss_func
    def loss_func(pred, y): raise KeyboardInterrupt
    learn.loss_func = loss_func
    try: learn.lr_find(num_it=5, show_plot=False)
    finally: learn.loss_func = real


def test_the_table_is_big_enough():
    assert len(CASES) >= 40


# ---------------------------------------------------------------- one bad integer, one error, at every entry point

def ds(): return TensorDataset(torch.zeros(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))
CURVE = SimpleNamespace(curve=(np.logspace(-6, 0, 20), np.linspace(2., 1., 20), None))  # what LRPicker reads first of an LRFindResult

def ip(id, call, name, low=-1, xfail=None):
    "Entry point `id`: `call(learn, value)` passes `value` as the integer parameter `name`; `low` is below its minimum (None: it has none)."
    return id, call, name, low, xfail or {}

INT_PARAMS = [
    # schedules
    ip('one_cycle', lambda l, v: S.one_cycle(1e-2, v), 'total_steps'),
    ip('cyclic', lambda l, v: S.cyclic(1e-3, 1e-2, step_size=v), 'step_size'),
    ip('cyclic', lambda l, v: S.cyclic(1e-3, 1e-2, step_size_down=v), 'step_size_down'),
    ip('cyclic', lambda l, v: S.cyclic(1e-3, 1e-2, total_steps=v), 'total_steps'),
    ip('sgdr', lambda l, v: S.sgdr(1e-2, v), 'T_0'),
    ip('sgdr', lambda l, v: S.sgdr(1e-2, 10, n_cycles=v), 'n_cycles'),
    ip('cosine', lambda l, v: S.cosine(1e-2, v), 'total_steps'),
    ip('step_decay', lambda l, v: S.step_decay(1e-2, step_size=v), 'step_size'),
    ip('step_decay', lambda l, v: S.step_decay(1e-2, step_size=10, total_steps=v), 'total_steps'),
    ip('step_decay milestones=[v]', lambda l, v: S.step_decay(1e-2, milestones=[v]), 'milestones'),
    ip('warmup', lambda l, v: S.warmup(S.cosine(1e-2, 10), v), 'warmup_steps'),
    ip('flat_cos', lambda l, v: S.flat_cos(1e-2, v), 'total_steps'),
    # data, metrics, models
    ip('digits', lambda l, v: digits(bs=v), 'bs'),
    ip('digits', lambda l, v: digits(seed=v), 'seed'),
    ip('digits', lambda l, v: digits(n_train=v), 'n_train'),
    ip('digits', lambda l, v: digits(num_workers=v), 'num_workers'),
    ip('DataLoaders.from_dsets', lambda l, v: DataLoaders.from_dsets(ds(), bs=v), 'bs'),
    ip('DataLoaders.from_dsets', lambda l, v: DataLoaders.from_dsets(ds(), seed=v), 'seed'),
    ip('DataLoaders.from_dsets', lambda l, v: DataLoaders.from_dsets(ds(), num_workers=v), 'num_workers'),
    ip('image_folder', lambda l, v: image_folder(ROOT, bs=v), 'bs'),
    ip('top_k_accuracy', lambda l, v: top_k_accuracy(v), 'k'),
    ip('simple_cnn', lambda l, v: simple_cnn(n_classes=v), 'n_classes'),
    ip('simple_cnn', lambda l, v: simple_cnn(widths=(8, v)), 'widths'),
    ip('simple_cnn', lambda l, v: simple_cnn(seed=v), 'seed', low=None),
    ip('small_resnet', lambda l, v: small_resnet(n_classes=v), 'n_classes'),
    # layer groups
    ip('split_by_children', lambda l, v: split_by_children(v), 'n'),
    ip('spread_lrs', lambda l, v: spread_lrs(1e-3, v), 'n_groups'),
    ip('freeze_to', lambda l, v: freeze_to(l.model, l._groups(), v), 'n', low=-4),
    # distributed
    ip('shard_loader', lambda l, v: shard_loader(l.dls.train, rank=v, world_size=2), 'rank'),
    ip('shard_loader', lambda l, v: shard_loader(l.dls.train, rank=0, world_size=v), 'world_size'),
    # the range test
    ip('lr_find', lambda l, v: lr_find(l.model, l.dls.train, CE, l.opt, num_it=v), 'num_it'),
    ip('lr_find', lambda l, v: lr_find(l.model, l.dls.train, CE, l.opt, n_runs=v), 'n_runs'),
    ip('lr_find', lambda l, v: lr_find(l.model, l.dls.train, CE, l.opt, valid_every=v), 'valid_every'),
    ip('lr_find', lambda l, v: lr_find(l.model, l.dls.train, CE, l.opt, max_skips=v), 'max_skips'),
    ip('lr_find', lambda l, v: lr_find(l.model, l.dls.train, CE, l.opt, n_inp=v), 'n_inp'),
    ip('Learner.lr_find', lambda l, v: l.lr_find(num_it=v), 'num_it'),
    ip('Learner.lr_find', lambda l, v: l.lr_find(n_runs=v), 'n_runs'),
    ip('Learner.lr_find', lambda l, v: l.lr_find(max_skips=v), 'max_skips'),
    # the Learner
    ip('Learner', lambda l, v: Learner(data(), cnn(), CE, grad_accum=v), 'grad_accum'),
    ip('Learner', lambda l, v: Learner(data(), cnn(), CE, n_inp=v), 'n_inp'),
    ip('Learner.fit', lambda l, v: l.fit(v), 'n_epoch'),
    ip('Learner.fit', lambda l, v: l.fit(1, start_epoch=v), 'start_epoch'),
    ip('Learner.fit_one_cycle', lambda l, v: l.fit_one_cycle(v), 'n_epoch'),
    ip('Learner.fit_one_cycle', lambda l, v: l.fit_one_cycle(1, start_epoch=v), 'start_epoch'),
    ip('Learner.fit_flat_cos', lambda l, v: l.fit_flat_cos(v), 'n_epoch'),
    ip('Learner.fit_flat_cos', lambda l, v: l.fit_flat_cos(1, start_epoch=v), 'start_epoch'),
    ip('Learner.fit_clr', lambda l, v: l.fit_clr(v, 1e-4, 1e-2), 'n_epoch'),
    ip('Learner.fit_clr', lambda l, v: l.fit_clr(1, 1e-4, 1e-2, step_size=v), 'step_size'),
    ip('Learner.fit_sgdr', lambda l, v: l.fit_sgdr(v, 1), 'n_cycles'),
    ip('Learner.fit_sgdr', lambda l, v: l.fit_sgdr(1, v), 'cycle_len'),
    ip('Learner.fit_sgdr', lambda l, v: l.fit_sgdr(1, 1, cycle_mult=v), 'cycle_mult'),
    ip('Learner.fine_tune', lambda l, v: l.fine_tune(v), 'epochs'),
    ip('Learner.fine_tune', lambda l, v: l.fine_tune(1, freeze_epochs=v), 'freeze_epochs'),
    ip('Learner.overfit_batch', lambda l, v: l.overfit_batch(v), 'n_steps'),
    ip('Learner.freeze_to', lambda l, v: l.freeze_to(v), 'n', low=-4),
    ip('SaveModelCallback', lambda l, v: SaveModelCallback(keep=v), 'keep'),
    # widgets
    ip('schedule_explorer', lambda l, v: schedule_explorer(total_steps=v), 'total_steps'),
    ip('schedule_explorer', lambda l, v: schedule_explorer(steps_per_epoch=v), 'steps_per_epoch'),
    ip('lr_find_picker', lambda l, v: lr_find_picker(CURVE, skip_start=v), 'skip_start'),
    ip('lr_find_picker', lambda l, v: lr_find_picker(CURVE, skip_end=v), 'skip_end'),
]

# the bad values: (id, value or None for the entry's `low`, the one exception class for it everywhere)
BAD_INTS = [('2.0', 2.0, TypeError), ('True', True, TypeError), ('below-min', None, ValueError), ('nan', NAN, TypeError)]


def _int_cases():
    for id, call, name, low, xfails in INT_PARAMS:
        for vid, value, exc in BAD_INTS:
            if value is None:
                if low is None: continue
                value, vid = low, str(low)
            marks = [pytest.mark.xfail(strict=True, reason=xfails[vid])] if vid in xfails else []
            yield pytest.param(call, name, value, exc, id=f'{id} {name}={vid}', marks=marks)

INT_CASES = list(_int_cases())


@pytest.mark.parametrize('call,name,value,exc', INT_CASES)
def test_same_bad_int_gives_the_same_error_everywhere(learn, call, name, value, exc):
    "One bad value for an integer parameter: the same exception class and the same words at every entry point."
    before = state(learn)
    with pytest.raises(Exception) as e: call(learn, value)
    msg = str(e.value)
    assert type(e.value) is exc, (type(e.value).__name__, msg)
    assert re.match(rf"^`{re.escape(name)}` must be an integer( .*)?, got ", msg), msg
    got = f'{type(value).__name__} {value!r}' if exc is TypeError else repr(value)
    assert msg.endswith(f', got {got}'), msg
    assert_same(state(learn), before)


def test_the_integer_table_covers_the_entry_points():
    ids = {id for id, *_ in INT_PARAMS}
    assert len(INT_CASES) >= 4 * 30 and {'one_cycle', 'digits', 'lr_find', 'Learner.fit', 'SaveModelCallback', 'schedule_explorer'} <= ids


# ---------------------------------------------------------------- the command line

CLI_CASES = [
    (['plot', 'nope'], 'policy'),
    (['plot', 'one_cycle', '--lr_max', '-1', '--total_steps', '100'], '`lr_max`'),
    (['plot', 'one_cycle', '--lr_max', '1e-2', '--total_steps', '100', '--pct_start', '1.5'], '`pct_start`'),
    (['plot', 'cyclic', '--base_lr', '1e-3', '--max_lr', '1e-2', '--mode', 'saw'], '`mode`'),
    (['plot', 'cyclic', '--base_lr', '1e-2', '--max_lr', '1e-3'], '`base_lr`'),
    (['plot', 'sgdr', '--lr_max', '0.1', '--T_0', '10', '--T_mult', '0.5'], '`T_mult`'),
    (['plot', 'one_cycle', '--bogus', '1'], 'bogus'),
    (['plot', 'one_cycle', '--lr_max', '1e-2', '--total_steps', '100', '--steps', '0'], '--steps'),
    (['plot', 'one_cycle', '--lr_max', '1e-2'], 'total_steps'),
    (['demo', '--epochs', '0'], '--epochs'),
]

@pytest.mark.parametrize('argv,name', CLI_CASES, ids=[' '.join(a) for a, _ in CLI_CASES])
def test_cli_reports_one_line_and_exits_non_zero(argv, name, capsys, tmp_path):
    rc = cli.main(argv + ['-o', str(tmp_path / 'x.png')] if argv[0] == 'plot' else argv + ['--out', str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and 'Traceback' not in err[0] and name in err[0], err
    assert not (tmp_path / 'x.png').exists()


@pytest.mark.parametrize('argv,name', [(['plot', 'nope'], 'policy'),
                                       (['plot', 'one_cycle', '--lr_max', '0', '--total_steps', '10'], '`lr_max`'),
                                       (['plot', 'one_cycle', '--lr_max', '1e-2', '--total_steps', '10', '--steps', 'x'], '--steps')])
def test_the_console_command_fails_cleanly(argv, name, tmp_path):
    "The real `cyclr` console script in a subprocess: non-zero exit, the error on stderr's last line, no traceback."
    exe = Path(sys.executable).with_name('cyclr')
    p = subprocess.run([str(exe), *argv, '-o', str(tmp_path / 'x.png')], capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and 'Traceback' not in p.stderr and name in lines[-1] and 'error' in lines[-1], p.stderr
    assert len(lines) <= 2 and not (tmp_path / 'x.png').exists()  # argparse's own errors add its usage line
