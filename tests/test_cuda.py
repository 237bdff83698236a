"""The CUDA paths: skipped without CUDA. `bench/gpu_check.py` runs this file as its "pytest" line.

CYCLR_TEST_DEVICE=cpu runs the tests that do not need fp16 on the CPU instead (a dry run of the tests' own logic)."""
import os

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from cyclr.data import digits
from cyclr.learner import Learner
from cyclr.metrics import accuracy
from cyclr.models import simple_cnn
from _helpers import assert_same

DEV = torch.device(os.environ.get('CYCLR_TEST_DEVICE', 'cuda'))
CUDA = DEV.type == 'cuda'
pytestmark = pytest.mark.skipif(CUDA and not torch.cuda.is_available(), reason='needs CUDA')
CE = nn.CrossEntropyLoss()


def clone(sd):
    if isinstance(sd, torch.Tensor): return sd.detach().clone()
    if isinstance(sd, dict): return {k: clone(v) for k, v in sd.items()}
    if isinstance(sd, (list, tuple)): return type(sd)(clone(v) for v in sd)
    return sd


def count_steps():
    "A global optimizer step post-hook: counts only the steps that really happened (not those GradScaler skipped)."
    n = [0]
    return n, register_optimizer_step_post_hook(lambda *a: n.__setitem__(0, n[0] + 1))


def learner(mixed_precision=False, **kw):
    return Learner(digits(bs=64), simple_cnn(seed=0), CE, metrics=accuracy, mixed_precision=mixed_precision,
                   device=DEV, progress=False, **kw)


@pytest.mark.skipif(not CUDA, reason='fp16 needs CUDA')
def test_fp16_fit_trains_on_the_gpu_and_logs_only_real_steps():
    learn = learner('fp16')
    assert all(p.device.type == 'cuda' for p in learn.model.parameters())
    n, h = count_steps()
    try: learn.fit_one_cycle(2, lr_max=1e-2)
    finally: h.remove()
    assert 0 < n[0] == len(learn.recorder.lrs)
    train_loss, valid_loss, acc = learn.recorder.values[-1]
    assert valid_loss < 2.0 and acc > 0.5  # it learnt something, in fp16


@pytest.mark.parametrize('mp', [False, 'bf16'])
def test_lr_find_restores_weights_optimizer_and_rng_on_the_device(mp):
    made = []
    def opt_func(params, **kw):
        made.append(torch.optim.Adam(params, **kw)); return made[-1]
    model = nn.Sequential(simple_cnn(seed=0), nn.Dropout(0.2))  # Dropout draws from the device's RNG
    learn = Learner(digits(bs=64), model, CE, opt_func=opt_func, mixed_precision=mp, device=DEV, progress=False)
    learn.fit(1, 1e-3)
    opt = made[-1]
    before = dict(model=clone(learn.model.state_dict()), opt=clone(opt.state_dict()), cpu=torch.get_rng_state())
    if CUDA: before['cuda'] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    n, h = count_steps()
    try: res = learn.lr_find(num_it=30, show_plot=False)
    finally: h.remove()
    assert len(res.lrs) == n[0] > 0
    after = dict(model=learn.model.state_dict(), opt=opt.state_dict(), cpu=torch.get_rng_state())
    if CUDA: after['cuda'] = torch.cuda.get_rng_state_all()
    assert_same(before, after)


def test_save_load_round_trip_keeps_tensors_on_the_device(tmp_path):
    learn = learner(path=tmp_path)
    learn.fit(1, 1e-3)
    state = clone(learn.model.state_dict())
    learn.save('a')
    learn.fit(1, 1e-3)
    learn.load('a')
    assert_same(state, learn.model.state_dict())
    assert all(p.device.type == DEV.type for p in learn.model.parameters())


@pytest.mark.skipif(not CUDA, reason='the default device is CUDA only with CUDA')
def test_the_default_device_is_cuda():
    learn = Learner(digits(bs=64), simple_cnn(seed=0), CE, progress=False)
    assert learn.device.type == 'cuda' and next(learn.model.parameters()).is_cuda
