"""Faults caused for real, and what the user had is never lost, bit for bit: a writer SIGKILLed at many points of a
large checkpoint, a full filesystem (RLIMIT_FSIZE in a child), bad checkpoint files of every kind, fits that fail
on their first batch, multi-input batches through every loop, and bad runtime input (loaders, batches, data, losses,
files). The 2-rank save -> load test lives in tests/test_distributed.py with the other spawned-rank tests.

Every "nothing changed" is `state(learn)` before == after under `_helpers.assert_same`: weights, buffers, gradients,
modes, optimizer (object, state, hyper-parameters), Recorder, counters, fit position, the four RNGs and the loaders'
generators. Cases that reveal a bug in a module this file does not test the internals of are xfail(strict=True) with
the reason."""
import copy
import errno
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cyclr.callback import Callback
from cyclr.checkpoint import MAGIC, VERSION, CheckpointError, read_checkpoint, write_checkpoint
from cyclr.data import DataLoaders, digits
from cyclr.discriminative import split_by_children
from cyclr.learner import Learner
from cyclr.lr_find import lr_find
from cyclr.recorder import GroupLRs, Recorder
from cyclr.state import Snapshot, loader_generators
import _helpers
from _helpers import assert_same

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CE = nn.CrossEntropyLoss()


# ---------------------------------------------------------------- a Learner with history, and all of its state

class Loss:
    "Cross-entropy that, once armed, raises `exc` or multiplies by `value` from training call `at` on."
    def __init__(self): self.at, self.exc, self.value, self.calls = None, None, None, 0
    def arm(self, at=1, exc=None, value=None): self.at, self.exc, self.value, self.calls = at, exc, value, 0
    def __call__(self, pred, y):
        loss = nn.functional.cross_entropy(pred, y)
        if self.at is None or not torch.is_grad_enabled(): return loss
        self.calls += 1
        if self.calls < self.at: return loss
        if self.exc is not None: raise self.exc('trap')
        return loss * self.value


def learner(path, opt_func=torch.optim.Adam, splitter=split_by_children(3), trained=True, dls=None, model=None, **kw):
    "A Learner with history: one epoch trained (optimizer state, BN statistics, a Recorder), dropout (RNG), 3 layer groups."
    torch.manual_seed(0)
    learn = Learner(dls or digits(bs=32, n_train=64), model or _helpers.cnn(0, dropout=.1), Loss(), opt_func=opt_func,
                    splitter=splitter, progress=False, path=path, **kw)
    if trained: learn.fit_one_cycle(1, slice(1e-3, 1e-2))
    return learn


def state(learn):
    "Deep copies of everything a failed call must leave as it was."
    opt, params = learn.opt, [p for g in learn.opt.param_groups for p in g['params']]
    return dict(model={k: v.clone() for k, v in learn.model.state_dict().items()},
                opt_id=id(opt), opt_class=type(opt).__name__,
                opt_state=[{k: v.clone() if torch.is_tensor(v) else v for k, v in opt.state[p].items()} if p in opt.state else None for p in params],
                hypers=[{k: copy.deepcopy(v) for k, v in g.items() if k != 'params'} for g in opt.param_groups],
                groups=[[id(p) for p in g['params']] for g in opt.param_groups],
                grads=[None if p.grad is None else p.grad.clone() for p in learn.model.parameters()],
                requires_grad=[p.requires_grad for p in learn.model.parameters()],
                modes=[m.training for m in learn.model.modules()],
                recorder=learn.recorder.state_dict(), group_lrs=learn.recorder.group_lrs,
                attrs=dict(step=learn.step, epoch=learn.epoch, n_epoch=learn.n_epoch, start_epoch=learn.start_epoch,
                           frozen=learn._frozen, lr=learn.lr, wd=learn.wd, in_fit=learn.in_fit, training=learn.training,
                           cbs=[id(c) for c in learn.cbs], fit=learn._fit_position(), resume=copy.deepcopy(learn._resume_pos),
                           dls=id(learn.dls), train=id(learn.dls.train), loss_func=id(learn.loss_func)),
                rng=(torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()),
                gens=[g.get_state() for g in loader_generators([learn.dls.train, learn.dls.valid])])


def params(learn): return [p.detach().clone() for p in learn.model.parameters()]


# ---------------------------------------------------------------- SIGKILL during the write of a large checkpoint

FIGURES = {}  # what the fault tests measured; printed at the end of each (pytest -s shows them)


def _fork_save(learn, name):
    "Fork a child that runs `learn.save(name)` and exits; its pid."
    pid = os.fork()
    if pid == 0:  # the child: save, then leave without running the parent's cleanup
        code = 1
        try: learn.save(name); code = 0
        finally: os._exit(code)
    return pid


def test_sigkill_during_save_leaves_the_old_or_the_new_checkpoint(tmp_path):
    "24 SIGKILLs spread over the whole save of a 105 MB checkpoint: the name always loads, to exactly the old or the new state."
    model = nn.Linear(5120, 5120, bias=False)  # 5120 * 5120 * 4 bytes = 105 MB of weights
    dls = DataLoaders(DataLoader(TensorDataset(torch.zeros(4, 5120), torch.zeros(4, dtype=torch.long)), batch_size=2), None)
    learn = Learner(dls, model, CE, opt_func=torch.optim.SGD, progress=False, path=tmp_path)
    file = tmp_path / 'models' / 'big.pth'
    fill = lambda v: torch.nn.init.constant_(learn.model.weight, v)
    value_of = lambda ck: float(ck['model']['weight'][0, 0]) if bool((ck['model']['weight'] == ck['model']['weight'][0, 0]).all()) else None
    fill(0.); learn.save('big')
    assert file.stat().st_size >= 100 * 2**20
    t0 = time.perf_counter(); pid = _fork_save(learn, 'big')
    assert os.waitpid(pid, 0)[1] == 0
    t_write = time.perf_counter() - t0                 # one whole save in a forked child, measured here
    old, n_kills = 0., 24
    outcome = dict(before_temp=0, mid_write=0, after_replace=0)
    for i in range(n_kills):
        new = float(i + 1)
        fill(new)
        temps_before = set(file.parent.glob('.big.pth.*.tmp'))
        pid = _fork_save(learn, 'big')
        time.sleep(t_write * 1.1 * (i + .5) / n_kills)   # spread over the save and a little past its end
        os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)
        left = set(file.parent.glob('.big.pth.*.tmp')) - temps_before
        got = value_of(read_checkpoint(file))          # raises CheckpointError if the name were half-written
        assert got in (old, new), (i, got, old, new)
        outcome['after_replace' if got == new else 'mid_write' if left else 'before_temp'] += 1
        old = got
    assert outcome['mid_write'] >= 1, outcome          # the kills did land inside the write
    fill(-1.); learn.save('big')                       # a successful save sweeps the temporary files killed writers left
    assert not list(file.parent.glob('.big.pth.*.tmp'))
    fill(5.); learn.load('big')
    assert bool((learn.model.weight == -1.).all())
    FIGURES['sigkill'] = dict(size_mb=round(file.stat().st_size / 2**20, 1), write_s=round(t_write, 2), tried=n_kills,
                              survived=n_kills, **outcome)
    print('\nSIGKILL during save:', FIGURES['sigkill'])


# ---------------------------------------------------------------- a full filesystem

FULL_DISK = textwrap.dedent('''
    import sys, torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from cyclr.data import DataLoaders
    from cyclr.learner import Learner
    torch.set_num_threads(1)
    dls = DataLoaders(DataLoader(TensorDataset(torch.zeros(4, 1024), torch.zeros(4, dtype=torch.long)), batch_size=2), None)
    learn = Learner(dls, nn.Linear(1024, 1024), nn.CrossEntropyLoss(), progress=False, path=sys.argv[1])
    try: learn.save('ck')
    except OSError as e: print(e.errno, e, sep='\\n'); sys.exit(3)
''')


def _limit_file_size(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_full_filesystem_keeps_the_old_checkpoint_and_names_the_file(tmp_path):
    "A save that cannot be written (RLIMIT_FSIZE below the checkpoint's size): OSError naming the path, old file intact, no temp file."
    dls = DataLoaders(DataLoader(TensorDataset(torch.zeros(4, 1024), torch.zeros(4, dtype=torch.long)), batch_size=2), None)
    old = Learner(dls, nn.Linear(1024, 1024), CE, progress=False, path=tmp_path)
    file = old.save('ck')
    before = file.read_bytes()
    assert len(before) > 2**21
    (tmp_path / 'run.py').write_text(FULL_DISK)
    p = subprocess.run([sys.executable, str(tmp_path / 'run.py'), str(tmp_path)], capture_output=True, text=True, timeout=120,
                       preexec_fn=_limit_file_size(2**20), env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert p.returncode == 3, p.stderr[-2000:]
    code, msg = p.stdout.split('\n', 1)
    assert int(code) == errno.EFBIG and str(file) in msg and 'unchanged' in msg
    assert file.read_bytes() == before                       # the old checkpoint, byte for byte
    assert sorted(x.name for x in file.parent.iterdir()) == ['ck.pth']   # no temporary file left behind
    st = state(old); old.load('ck')
    assert_same(state(old), st)                              # and it still loads to what was saved


def test_an_unwritable_place_is_an_oserror_naming_the_file(tmp_path):
    learn = learner(tmp_path, trained=False)
    (tmp_path / 'afile').write_text('x')
    st = state(learn)
    with pytest.raises(OSError, match=r"could not write checkpoint .*afile.*unchanged"): learn.save(tmp_path / 'afile' / 'ck.pth')
    assert_same(state(learn), st)


# ---------------------------------------------------------------- stale temporary files

def test_the_next_save_sweeps_stale_temporary_files_of_that_name_only(tmp_path):
    folder = tmp_path / 'models'; folder.mkdir()
    stale = [folder / '.ck.pth.abcd1234.tmp', folder / '.ck.pth.zz_9zz_9.tmp']
    others = [folder / '.ck.pth.short.tmp', folder / '.ck.pth.abcd1234.tmp.keep', folder / '.other.pth.abcd1234.tmp',
              folder / 'ck.pth.abcd1234.tmp', folder / '.ck.pthx.abcd1234.tmp']
    for f in stale + others: f.write_bytes(b'partial')
    past = time.time() - 60
    for f in stale + others: os.utime(f, (past, past))
    fresh = folder / '.ck.pth.fresh123.tmp'; fresh.write_bytes(b'a writer at work')   # newer than the write: kept
    os.utime(fresh, (time.time() + 60, time.time() + 60))
    write_checkpoint(folder / 'ck.pth', dict(a=1))
    assert not any(f.exists() for f in stale) and all(f.exists() for f in others) and fresh.exists()
    assert read_checkpoint(folder / 'ck.pth') == dict(a=1)


# ---------------------------------------------------------------- bad checkpoint files leave everything as it was

def _rewrite(src, dst, edit):
    "Checkpoint `src` read, changed by `edit(state)`, and written (valid header and checksum) to `dst`."
    ck = read_checkpoint(src); edit(ck); write_checkpoint(dst, ck); return dst


def _future(src, dst):
    data = src.read_bytes()
    head, rest = data[len(MAGIC):].split(b'\n', 1)
    dst.write_bytes(MAGIC + f'{VERSION + 1}\n'.encode() + rest); return dst


def _swap_groups(m):
    "Groups (conv2 + bn2, conv1 + bn1): 4 parameters each, in another order than (conv1 + bn1, conv2 + bn2)."
    convs = [x for x in m if isinstance(x, (nn.Conv2d, nn.BatchNorm2d))]
    return [[*convs[2].parameters(), *convs[3].parameters()], [*convs[0].parameters(), *convs[1].parameters()], [*m[-1].parameters()]]


def _in_order(m):
    convs = [x for x in m if isinstance(x, (nn.Conv2d, nn.BatchNorm2d))]
    return [[*convs[0].parameters(), *convs[1].parameters()], [*convs[2].parameters(), *convs[3].parameters()], [*m[-1].parameters()]]


def _two_gens():
    d = digits(bs=32, n_train=64)
    valid = DataLoader(d.valid.dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(1))
    return DataLoaders(d.train, valid)


BAD_FILES = {
    'truncated': lambda good, dst: (dst.write_bytes(good.read_bytes()[:good.stat().st_size // 2]), dst)[1],
    'one flipped byte': lambda good, dst: (dst.write_bytes((lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0x10]) + b[len(b) // 2 + 1:])(good.read_bytes())), dst)[1],
    'random bytes': lambda good, dst: (dst.write_bytes(np.random.default_rng(0).bytes(4096)), dst)[1],
    'plain torch.save zip': lambda good, dst: (torch.save(read_checkpoint(good)['model'], dst), dst)[1],
    'empty file': lambda good, dst: (dst.write_bytes(b''), dst)[1],
    'header only': lambda good, dst: (dst.write_bytes(MAGIC + f'{VERSION}\n'.encode()), dst)[1],
    'version from the future': _future,
    'missing recorder keys': lambda good, dst: _rewrite(good, dst, lambda ck: [ck['recorder'].pop(k) for k in ('epoch_steps', 'group_lrs')]),
    'recorder of inconsistent length': lambda good, dst: _rewrite(good, dst, lambda ck: ck['recorder']['lrs'].append(1.)),
    'recorder group_lrs malformed': lambda good, dst: _rewrite(good, dst, lambda ck: ck['recorder']['group_lrs'].update(run_starts=[5, 2])),
    'optimizer state of a missing parameter': lambda good, dst: _rewrite(good, dst, lambda ck: ck['opt']['state'].update({99: {}})),
    'rng without its parts': lambda good, dst: _rewrite(good, dst, lambda ck: ck.update(rng=dict(generators=ck['rng']['generators']))),
    'not a dict': lambda good, dst: (write_checkpoint(dst, [1, 2, 3]), dst)[1],
    'no model': lambda good, dst: _rewrite(good, dst, lambda ck: ck.pop('model')),
}

OTHER_LEARNERS = {  # a good checkpoint of another Learner: (how to make the saver, how to make the loader)
    'another model (other shapes)': (dict(model=nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), splitter=None), {}),
    'Adam checkpoint into an SGD Learner': ({}, dict(opt_func=torch.optim.SGD)),
    'Adam checkpoint into an RMSprop Learner': ({}, dict(opt_func=torch.optim.RMSprop)),
    'layer groups of equal sizes in another order': (dict(splitter=_in_order), dict(splitter=_swap_groups)),
    'another number of layer groups': ({}, dict(splitter=split_by_children(2))),
    'wrong generator count': ({}, dict(dls=_two_gens())),
}


@pytest.mark.parametrize('case', list(BAD_FILES))
def test_a_bad_checkpoint_file_changes_nothing_and_names_the_file(tmp_path, case):
    learn = learner(tmp_path)
    good = learn.save('good')
    learn.fit(1, lr=1e-3)                                 # the state now differs from the file's
    bad = BAD_FILES[case](good, tmp_path / 'models' / 'bad.pth')
    st = state(learn)
    with pytest.raises(CheckpointError) as e: learn.load('bad')
    assert str(bad) in str(e.value)
    assert_same(state(learn), st)
    with pytest.raises(CheckpointError): learn.fit(1, resume_from='bad')   # the same file through a resumed fit
    assert_same(state(learn), st)


@pytest.mark.parametrize('case', list(OTHER_LEARNERS))
def test_a_checkpoint_of_another_learner_changes_nothing_and_names_the_file(tmp_path, case):
    saver_kw, loader_kw = OTHER_LEARNERS[case]
    file = learner(tmp_path, **saver_kw).save('theirs')
    learn = learner(tmp_path, **loader_kw)
    st = state(learn)
    with pytest.raises(CheckpointError) as e: learn.load('theirs')
    assert str(file) in str(e.value)
    assert_same(state(learn), st)


def test_a_missing_checkpoint_names_the_file(tmp_path):
    learn = learner(tmp_path)
    st = state(learn)
    for name in ('nope', tmp_path / 'nope.pth'):
        with pytest.raises(FileNotFoundError, match='nope.pth'): learn.load(name)
    assert_same(state(learn), st)


def test_a_version_2_checkpoint_loads(tmp_path):
    "Version 2 (group_lrs as a list of rows, before the compact table) still loads, to the same LRs."
    learn = learner(tmp_path)
    rows = learn.recorder.group_lrs
    old = _rewrite(learn.save('new'), tmp_path / 'models' / 'old.pth', lambda ck: ck['recorder'].update(group_lrs=rows))
    data = old.read_bytes(); n = len(MAGIC)
    assert data[n:n + 2] == f'{VERSION}\n'.encode()
    old.write_bytes(data[:n] + b'2\n' + data[n + 2:])     # the checksum covers the payload only
    learn.fit(1, lr=1e-3)
    learn.load('old')
    assert learn.recorder.group_lrs == rows


# ---------------------------------------------------------------- a fit that fails on its first batch changes nothing

class RaiseIn(Callback):
    def __init__(self, event, exc): self.exc = exc; setattr(self, event, self._raise)
    def _raise(self, learn):
        if learn.training: raise self.exc('trap')


FIRST_BATCH = {
    'the loss raises': (lambda learn: learn.loss_func.arm(1, exc=RuntimeError), [], RuntimeError),
    'a callback raises in before_batch': (lambda learn: None, [RaiseIn('before_batch', ValueError)], ValueError),
    'KeyboardInterrupt in after_loss': (lambda learn: None, [RaiseIn('after_loss', KeyboardInterrupt)], KeyboardInterrupt),
    'KeyboardInterrupt in before_step': (lambda learn: None, [RaiseIn('before_step', KeyboardInterrupt)], KeyboardInterrupt),
    'a NaN loss': (lambda learn: learn.loss_func.arm(1, value=float('nan')), [], FloatingPointError),
}


@pytest.mark.parametrize('policy', ['fit', 'fit_one_cycle'])
@pytest.mark.parametrize('case', list(FIRST_BATCH))
def test_a_fit_failing_on_its_first_batch_changes_nothing(tmp_path, case, policy):
    "Weights, BN running statistics (the forward ran), Recorder, counters, RNG (dropout drew) and optimizer as they were."
    learn = learner(tmp_path)
    arm, cbs, exc = FIRST_BATCH[case]
    st = state(learn)
    arm(learn)
    with pytest.raises(exc):
        if policy == 'fit': learn.fit(2, lr=1e-2, cbs=cbs)
        else: learn.fit_one_cycle(2, 1e-2, cbs=cbs)
    assert_same(state(learn), st)
    learn.loss_func.at = None
    learn.fit(1, lr=1e-3)                                 # and the Learner trains on


# ---------------------------------------------------------------- multi-input batches through every loop

class TwoInputs(nn.Module):
    "A model of two inputs, called as model(x1, x2) or model((x1, x2))."
    def __init__(self):
        super().__init__(); torch.manual_seed(0)
        self.a, self.b, self.head = nn.Linear(32, 16), nn.Linear(32, 16), nn.Linear(32, 10)
    def forward(self, *xs):
        x1, x2 = xs[0] if len(xs) == 1 else xs
        return self.head(torch.cat([self.a(x1).relu(), self.b(x2).relu()], 1))


class Pairs(torch.utils.data.Dataset):
    "Digits as two halves (x1, x2) and label(s), in the layout `kind`: flat, nested or two targets."
    def __init__(self, x, y, kind): self.x, self.y, self.kind = x.flatten(1), y, kind
    def __len__(self): return len(self.y)
    def __getitem__(self, i):
        x1, x2, y = self.x[i, :32], self.x[i, 32:], self.y[i]
        return {'flat': (x1, x2, y), 'nested': ((x1, x2), y), 'two targets': (torch.cat([x1, x2]), y, y)}[self.kind]


class OneInput(nn.Module):
    "The same network for one input of 64 features (the two-targets layout)."
    def __init__(self): super().__init__(); self.net = TwoInputs()
    def forward(self, x): return self.net(x[:, :32], x[:, 32:])


def two_target_loss(pred, y): y1, y2 = y; return (CE(pred, y1) + CE(pred, y2)) / 2


def multi(kind):
    d = digits(bs=32, n_train=64)
    (x, y), (xv, yv) = d.train.dataset.tensors, d.valid.dataset.tensors
    dls = DataLoaders(DataLoader(Pairs(x, y, kind), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)),
                      DataLoader(Pairs(xv[:48], yv[:48], kind), batch_size=16))
    if kind == 'two targets': return dls, OneInput(), two_target_loss, dict(n_inp=1)
    return dls, TwoInputs(), CE, {}


@pytest.mark.parametrize('kind', ['flat', 'nested', 'two targets'])
def test_multi_input_batches_go_through_fit_lr_find_validate_and_get_preds(tmp_path, kind):
    dls, model, loss, kw = multi(kind)
    learn = Learner(dls, model, loss, progress=False, path=tmp_path, **kw)
    st = state(learn)
    res = learn.lr_find(num_it=6, show_plot=False)          # through the Learner: restores everything
    assert len(res.lrs) == 6 and np.isfinite(res.raw_losses).all()
    assert_same(state(learn), st)
    res2 = lr_find(learn.model, dls.train, loss, learn.opt, num_it=6, show_plot=False, **kw)   # standalone
    assert np.array_equal(res2.raw_losses, res.raw_losses)
    assert_same(state(learn), st)
    learn.fit(1, lr=1e-2)
    assert learn.step == 4 and np.isfinite(learn.recorder.values[0]).all()
    v = learn.validate()
    assert len(v) == 1 and np.isfinite(v[0]) and v[0] == learn.recorder.values[0][1]
    preds, targs = learn.get_preds()
    assert preds.shape == (48, 10)
    if kind == 'two targets': assert len(targs) == 3 and all(len(t) == 2 for t in targs)
    else: assert targs.shape == (48,)


def test_flat_and_nested_batches_train_alike(tmp_path):
    "The same items in the two layouts give bit-identical training."
    out = []
    for kind in ('flat', 'nested'):
        dls, model, loss, kw = multi(kind)
        learn = Learner(dls, model, loss, progress=False, path=tmp_path)
        torch.manual_seed(1); learn.fit_one_cycle(2, 1e-2)
        out.append((learn.model.state_dict(), learn.recorder.losses, learn.recorder.values))
    assert_same(out[0], out[1])


# ---------------------------------------------------------------- bad runtime input: a clear error, nothing changed

class YieldsNothing:
    "A loader that says it has 3 batches and yields none."
    def __init__(self, n=3): self.n = n
    def __len__(self): return self.n
    def __iter__(self): return iter(())


def loader(x, y=None, bs=32, **kw):
    ds = TensorDataset(x) if y is None else TensorDataset(x, y)
    return DataLoader(ds, batch_size=bs, **kw)


def tensors(): return digits(bs=32, n_train=64).train.dataset.tensors


def tensor_batches(): return DataLoader(tensors()[0], batch_size=32)   # each batch a bare tensor


def with_train(dl):
    "Set the Learner's training loader to `dl` (before the state is taken), then fit."
    return lambda learn: setattr(learn.dls, 'train', dl)


def nan_at(i, v=float('nan')):
    x, y = tensors(); x = x.clone(); x[i, 0, 3, 3] = v; return DataLoader(TensorDataset(x, y), batch_size=32)


class Mapped(torch.utils.data.Dataset):
    "Items of `x, y` through `f(i, x, y)`."
    def __init__(self, f): self.x, self.y = tensors(); self.f = f
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return self.f(i, self.x[i], self.y[i])


def mapped(f, bs=32): return DataLoader(Mapped(f), batch_size=bs)


def raising(i, x, y):
    if i == 5: raise IndexError('item 5 is broken')
    return x, y


def meta_cnn():
    "The tiny CNN on the meta device, built without touching the global RNG (the state compared afterwards)."
    with torch.random.fork_rng(devices=[]): return _helpers.cnn(0).to('meta')


BAD_RUNTIME = [
    # (name, setup(learn) or None, call(learn), exception, message regex) -- setup runs before the state is taken
    ('fit on an empty training loader', with_train(loader(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))),
     lambda l: l.fit(1), ValueError, r'`dls\.train` is empty'),
    ('lr_find on an empty training loader', with_train(loader(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))),
     lambda l: l.lr_find(num_it=3, show_plot=False), ValueError, 'empty'),
    ('lr_find on a loader yielding nothing', with_train(YieldsNothing()), lambda l: l.lr_find(num_it=3, show_plot=False),
     ValueError, 'no batches'),
    ('fit on batches that are tensors', with_train(tensor_batches()), lambda l: l.fit(1), TypeError,
     r'batches of `dls\.train` must be tuples.*got a Tensor'),
    ('fit on batches of 1 item', with_train(DataLoader(TensorDataset(tensors()[0]), batch_size=32, collate_fn=lambda b: [torch.stack([x[0] for x in b])])),
     lambda l: l.fit(1), TypeError, 'at least 2 items, got a list of length 1'),
    ('fit on dict batches', with_train(mapped(lambda i, x, y: {'x': x, 'y': y})), lambda l: l.fit(1), TypeError, 'got a dict'),
    ('lr_find on batches that are tensors', with_train(tensor_batches()), lambda l: l.lr_find(num_it=3, show_plot=False),
     TypeError, 'must be tuples'),
    ('lr_find on batches of 1 item', with_train(DataLoader(TensorDataset(tensors()[0]), batch_size=32, collate_fn=lambda b: [torch.stack([x[0] for x in b])])),
     lambda l: l.lr_find(num_it=3, show_plot=False), TypeError, 'at least 2 items'),
    ('validate on batches that are tensors', None, lambda l: l.validate(tensor_batches()), TypeError, r'batches of `dl` must be tuples.*got a Tensor'),
    ('get_preds on batches that are tensors', None, lambda l: l.get_preds(tensor_batches()), TypeError, r'batches of `dl` must be tuples.*got a Tensor'),
    ('validate on an empty loader', None, lambda l: l.validate(loader(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))), ValueError, r'`dl` is empty'),
    ('get_preds on an empty loader', None, lambda l: l.get_preds(loader(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))), ValueError, r'`dl` is empty'),
    ('validate on a str', None, lambda l: l.validate('valid'), TypeError, '`dl`'),
    ('validate on a tensor', None, lambda l: l.validate(torch.zeros(3)), TypeError, '`dl`'),
    ('validate on a generator without len', None, lambda l: l.validate((b for b in [])), TypeError, '`dl`.*length'),
    ('NaN in the first batch', with_train(nan_at(3)), lambda l: l.fit(1), FloatingPointError, r'nan at optimizer step 0 \(epoch 0, batch 0\)'),
    ('inf in the first batch', with_train(nan_at(3, float('inf'))), lambda l: l.fit(1), FloatingPointError, r'optimizer step 0'),
    ('NaN in the first batch, lr_find', with_train(nan_at(0)), lambda l: l.lr_find(num_it=3, show_plot=False), None, None),
    ('labels of the wrong dtype', with_train(loader(tensors()[0], tensors()[1].float())), lambda l: l.fit(1), RuntimeError,
     r'(?s)target dtype.*in `loss_func`.*torch\.float32'),
    ('labels out of range', with_train(loader(tensors()[0], tensors()[1] + 10)), lambda l: l.fit(1), IndexError, 'out of bounds|Target'),
    ('labels of another length', with_train(mapped(lambda i, x, y: (x, torch.stack([y, y])), bs=32)), lambda l: l.fit(1),
     (RuntimeError, ValueError), 'loss_func|size|shape'),
    ('inputs of the wrong shape', with_train(loader(torch.zeros(64, 3, 8, 8), tensors()[1])), lambda l: l.fit(1), RuntimeError, 'channels|shape|size'),
    ('inputs of the wrong dtype', with_train(loader(torch.zeros(64, 1, 8, 8, dtype=torch.long), tensors()[1])), lambda l: l.fit(1),
     RuntimeError, 'Long|dtype|type'),
    ('a dataset item that raises', with_train(mapped(raising)), lambda l: l.fit(1), IndexError, 'item 5 is broken'),
    ('n_inp too large for the batches', lambda l: setattr(l, 'n_inp', 2), lambda l: l.fit(1), ValueError, r'`n_inp` must be in \[1, 1\]'),
    ('n_inp too large, validate', lambda l: setattr(l, 'n_inp', 2), lambda l: l.validate(), ValueError, '`n_inp`'),
    ('n_inp too large, lr_find', lambda l: setattr(l, 'n_inp', 2), lambda l: l.lr_find(num_it=3, show_plot=False), ValueError, '`n_inp`'),
    ('a loss that returns a Python float', lambda l: setattr(l, 'loss_func', lambda p, y: 1.0), lambda l: l.fit(1), TypeError, '`loss_func`'),
    ('a loss returning a non-scalar', lambda l: setattr(l, 'loss_func', nn.CrossEntropyLoss(reduction='none')), lambda l: l.fit(1),
     ValueError, '`loss_func`.*scalar'),
    ('a loss class set after construction', lambda l: setattr(l, 'loss_func', nn.CrossEntropyLoss), lambda l: l.fit(1),
     TypeError, r'`loss_func` must be .*CrossEntropyLoss\(\)'),
    ('a loss class at construction', None, lambda l: Learner(l.dls, l.model, nn.CrossEntropyLoss), TypeError, r'CrossEntropyLoss\(\) \(this is the class\)'),
    ('a loss that raises', lambda l: setattr(l, 'loss_func', lambda p, y: 1 / 0), lambda l: l.fit(1), ZeroDivisionError, ''),
    ('nothing trainable', lambda l: [p.requires_grad_(False) for p in l.model.parameters()], lambda l: l.fit(1), ValueError,
     'no parameter that requires a gradient'),
    ('nothing trainable, lr_find', lambda l: [p.requires_grad_(False) for p in l.model.parameters()],
     lambda l: l.lr_find(num_it=3, show_plot=False), ValueError, 'no parameter that requires a gradient'),
    ('grad_accum set to 0', lambda l: setattr(l, 'grad_accum', 0), lambda l: l.fit(1), ValueError, '`grad_accum` must be'),
    ('grad_clip set to -1', lambda l: setattr(l, 'grad_clip', -1.), lambda l: l.fit(1), ValueError, '`grad_clip` must be'),
    ('a model on the meta device', None, lambda l: Learner(l.dls, meta_cnn(), CE, progress=False), ValueError, '`model`.*meta'),
    ('a schedule giving NaN', None, lambda l: l.fit(1, sched=lambda s: float('nan')), ValueError, '`sched` must be a schedule of finite LRs'),
    ('a schedule giving negative LRs', None, lambda l: l.fit(1, sched=lambda s: -1.), ValueError, '`sched`'),
    ('a schedule giving 2 LRs for 3 groups', None, lambda l: l.fit(1, sched=lambda s: np.ones((len(np.atleast_1d(s)), 2))), ValueError, '`sched`.*1 or 3 LRs'),
    ('a schedule that raises', None, lambda l: l.fit(1, sched=lambda s: 1 / 0), ZeroDivisionError, ''),
    ('NaN lr', None, lambda l: l.fit(1, lr=float('nan')), ValueError, '`lr`'),
    ('lr for 5 groups of 3', None, lambda l: l.fit(1, lr=[1e-3] * 5), ValueError, '`lr`'),
    ('start_epoch past n_epoch', None, lambda l: l.fit(2, start_epoch=2), ValueError, '`start_epoch`'),
    ('resume_from and start_epoch', lambda l: l.save('ck'), lambda l: l.fit(2, start_epoch=1, resume_from='ck'), ValueError, 'not both'),
    ('resume_from a missing file', None, lambda l: l.fit(1, resume_from='missing'), FileNotFoundError, r'missing\.pth'),
    ('resume_from a checkpoint not at an epoch boundary of a fit', lambda l: Learner.save(learner(l.path, trained=False), 'fresh'),
     lambda l: l.fit(1, resume_from='fresh'), ValueError, 'epoch boundary'),
    ('save with an empty name', None, lambda l: l.save(''), ValueError, '`name`'),
    ('save with name None', None, lambda l: l.save(None), TypeError, '`name`'),
    ('save with a number as name', None, lambda l: l.save(3), TypeError, '`name`'),
    ('save with with_opt="yes"', None, lambda l: l.save('ck', with_opt='yes'), TypeError, '`with_opt`'),
    ('save under a file', lambda l: (l.path / 'afile').write_text('x'), lambda l: l.save(l.path / 'afile' / 'ck.pth'), OSError, 'afile'),
    ('load with an empty name', None, lambda l: l.load(''), ValueError, '`name`'),
    ('load with a list as name', None, lambda l: l.load(['ck']), TypeError, '`name`'),
    ('load a folder', lambda l: (l.path / 'dir.pth').mkdir(), lambda l: l.load(l.path / 'dir.pth'), FileNotFoundError, r'dir\.pth'),
    ('load with with_rng=1', lambda l: l.save('ck'), lambda l: l.load('ck', with_rng=1), TypeError, '`with_rng`'),
    ('fit on a loader yielding nothing', with_train(YieldsNothing()), lambda l: l.fit(1), ValueError, r'`dls\.train`.*no batches'),
    ('validate on a loader yielding nothing', None, lambda l: l.validate(YieldsNothing()), ValueError, r'`dl`.*no batches'),
    ('get_preds on a loader yielding nothing', None, lambda l: l.get_preds(YieldsNothing()), ValueError, r'`dl`.*no batches'),
]

BUGS = {}  # cases that show a bug in the package, xfail(strict=True) with the reason until it is fixed


@pytest.mark.parametrize('name, setup, call, exc, match',
                         [pytest.param(*c, marks=pytest.mark.xfail(strict=True, reason=BUGS[c[0]])) if c[0] in BUGS else c
                          for c in BAD_RUNTIME], ids=[c[0] for c in BAD_RUNTIME])
def test_bad_runtime_input_is_a_clear_error_and_changes_nothing(tmp_path, name, setup, call, exc, match):
    learn = learner(tmp_path)
    if setup is not None: setup(learn)
    st = state(learn)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    if exc is None:                                         # the range test copes (it stops and restores), no error
        with pytest.warns(UserWarning, match='no LR suggestion'): res = call(learn)
        assert res.stop_reason == 'nan' and 'usable point' in res.no_suggestion
    else:
        with pytest.raises(exc, match=match): call(learn)
    assert_same(state(learn), st)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == files   # no file written or removed


def test_a_nan_mid_epoch_stops_at_that_step_with_the_last_finite_weights(tmp_path):
    "NaN in the 2nd batch: FloatingPointError naming optimizer step 1; the weights are those after step 0."
    class Last(Callback):
        order = -1
        def after_step(self, learn): self.p = params(learn)
    learn, last = learner(tmp_path), Last()
    learn.dls.train = nan_at(40)                            # item 40: the second batch of 32
    with pytest.raises(FloatingPointError, match=r'optimizer step 1 \(epoch 0, batch 1\).*last finite step'):
        learn.fit(1, lr=1e-3, cbs=[last])
    assert learn.step == 1 and all(torch.equal(a, b) for a, b in zip(last.p, learn.model.parameters()))
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_bad_runtime_inputs_number_at_least_40():
    assert len(BAD_RUNTIME) + len(BAD_FILES) + len(OTHER_LEARNERS) >= 40 and len(BAD_RUNTIME) >= 40


# ---------------------------------------------------------------- persistent workers: warned about, once

def test_persistent_workers_are_named_in_one_warning(tmp_path):
    d = digits(bs=32, n_train=64)
    train = DataLoader(d.train.dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0),
                       num_workers=1, persistent_workers=True)
    learn = Learner(DataLoaders(train, d.valid), _helpers.cnn(0), CE, progress=False, path=tmp_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        Snapshot(learn.model, learn.opt, [train]); learn.save('ck'); Snapshot(learn.model, learn.opt, [train])
    msgs = [str(x.message) for x in w if 'persistent_workers' in str(x.message)]
    assert len(msgs) == 1 and 'not saved or restored' in msgs[0] and 'persistent_workers=False' in msgs[0]
    with warnings.catch_warnings(record=True) as w:       # a loader without persistent workers: no warning
        warnings.simplefilter('always')
        Snapshot(learn.model, learn.opt, [d.train])
    assert not [x for x in w if 'persistent_workers' in str(x.message)]


# ---------------------------------------------------------------- the Recorder's LRs at scale

def test_group_lrs_are_compact_and_exact():
    "1,000 groups x 2,000 steps of one-cycle LRs times fixed ratios: one run of ratios, 8 bytes a step, every row exact."
    from cyclr.schedules import one_cycle
    G, T = 1000, 2000
    mults = np.geomspace(1e-3, 1, G)
    s = np.asarray(one_cycle(1e-2, T)(np.arange(T)), dtype=np.float64)
    class Opt: param_groups = [{'lr': 0., 'betas': (.9, .99)} for _ in range(G)]
    rec = Recorder()
    for t in range(T):
        for g, lr in zip(Opt.param_groups, (s[t] * mults).tolist()): g['lr'] = lr
        rec.log_step(Opt)
    assert len(rec._pending_lrs) * G <= 2**14  # rows not yet in the table stay few
    assert rec.group_lr_array().tobytes() == (s[:, None] * mults).tobytes()
    table = rec._group_lrs
    assert table._k == 1 and table._e == 0 and table.nbytes < 200_000  # was ~41 B/group/step: 82 MB
    assert rec.lrs == (s * mults[0]).tolist() and rec.group_lrs[7] == (s[7] * mults).tolist()
    back = Recorder(); back.load_state_dict(copy.deepcopy(rec.state_dict()))
    assert back.group_lr_array().tobytes() == rec.group_lr_array().tobytes()


def test_group_lrs_fall_back_to_rows_when_the_ratios_change_every_step():
    rng = np.random.default_rng(0)
    rows = rng.uniform(1e-4, 1e-2, (300, 5))
    table = GroupLRs()
    for r in rows: table.append(r)
    assert table.array().tobytes() == rows.tobytes()
    assert table.nbytes <= 2 * rows.nbytes + 3 * 8 * 300 + 1000   # a 2-D float64 table (doubling) at worst


def test_a_1e8_step_fit_allocates_nothing_per_step_before_its_first_batch():
    "The schedule is evaluated in chunks: the memory allocated before the first batch of a 1e8-step fit is small."
    import tracemalloc
    from cyclr.callback import CancelFitException
    class Loader:
        def __len__(self): return 10**8
        def __iter__(self): yield torch.randn(4, 8), torch.randint(0, 2, (4,))
    peak = {}
    class Cancel(Callback):
        def before_batch(self, learn): peak['mb'] = tracemalloc.get_traced_memory()[1] / 2**20; raise CancelFitException
    learn = Learner((Loader(), None), nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)), CE, progress=False)
    for run in (lambda: learn.fit_one_cycle(1, 1e-2, cbs=[Cancel()]), lambda: learn.fit(1, lr=1e-3, cbs=[Cancel()])):
        tracemalloc.start()
        try: run()
        finally: tracemalloc.stop()
        assert peak['mb'] < 8, peak                        # 6.2 GB on 5a5b3e4
