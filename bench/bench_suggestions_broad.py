"""A broad benchmark of LR suggestions for one cycle (issue 11): is the range test's answer as good as a grid?

Ten small tasks, all on CPU with data that ships with scikit-learn or that this script generates (no downloads):

| task | model | optimizer | bs | budget | metric | half |
|---|---|---|---|---|---|---|
| digits_cnn_bn_adam     | simple_cnn (BatchNorm)             | Adam           | 16  | 2 ep (short)   | accuracy   | choose   |
| signal_cnn_adamw       | 1-D CNN, no BatchNorm              | AdamW wd 1e-2  | 64  | 5 ep           | accuracy   | choose   |
| shapes_cnn_sgd         | 2-D CNN, no BatchNorm, shapes      | SGD mom 0.9    | 128 | 8 ep (longer)  | accuracy   | choose   |
| charlm_transformer     | causal transformer, char-level LM  | AdamW wd 1e-2  | 32  | 1 ep           | valid loss | choose   |
| regression_mlp_adam    | MLP on make_regression             | Adam           | 16  | 3 ep           | valid loss | choose   |
| digits_mlp_sgd         | MLP                                | SGD mom 0.9    | 64  | 6 ep           | accuracy   | held-out |
| blobs_mlp_adamw_bs256  | MLP on make_classification         | AdamW wd 1e-2  | 256 | 20 ep (longer) | accuracy   | held-out |
| shapes_resnet_sgd      | residual net (BatchNorm), shapes   | SGD mom 0.9    | 32  | 2 ep           | accuracy   | held-out |
| signal_regression_bn   | 1-D CNN with BatchNorm, regression | SGD mom 0.9    | 64  | 4 ep           | valid loss | held-out |
| finetune_digits_adam   | simple_cnn pretrained on digits 0-4, new head for 5-9, groups (body, head), slice(lr/10, lr) | Adam | 32 | 2 ep | accuracy | held-out |

The halves were fixed in this table before any result was seen: rules are chosen on "choose" and reported on both.

For each task and seed (the seed fixes the initial weights and the training order; the data are fixed): range tests
through `Learner.lr_find` (1e-7 -> 10, stop_div) with num_it 50, 100 and 200 (their raw curves are kept, so any rule
can be read off them later), then `fit_one_cycle` (the Learner's defaults) at each LR of a 9-point log grid and at
each rule's LR (num_it=100 curve). Every training run is stored as soon as it ends in bench/results/suggestions_broad.json
(keyed by task, seed, policy and LR), so an interrupted run loses nothing and a rerun trains only what is missing.
Score: accuracy (points) or, for loss tasks, validation loss (points lost = % above the best). The grid's best LR is
the one with the best mean over seeds; a rule's loss is paired by seed against the grid's best LR on the same seed.

Peers (`--peers`): fastai 2.8's `valley` and torch-lr-finder's steepest-gradient suggestion, each read off its own
range test (1e-7 -> 10, 100 steps) on the same model, data and optimizer, in a venv of their own under /tmp
(created with `--install`, as bench/bench_fastai.py does); their LRs are then trained by the same cyclr trainer.

Choosing the rules (`--choose`): `fitted_min` of each num_it=100 curve divided by 1 to 11 (widths 0.15-0.4 decades),
scored on the choose half only -- by real runs at width 0.25 (`--phase candidates`), by interpolating each seed's grid
otherwise; the pick is the largest worst-task score, then the best mean. That gave cyclr.lr_find.POLICY_DIV.

The stored results (bench/results/suggestions_broad.json, 2026-12-02, 2 worker processes of 1 thread on a shared
2-core CPU: about 40 min of wall time, 25 CPU-minutes) came from, in this order:
    --seeds 5 --phase find,grid --peers --install        (range tests, the one-cycle grid, the peers)
    --seeds 5 --phase candidates                         (the one-cycle candidates on the choose half)
    --seeds 3 --phase grid,candidates --policy constant
    --choose                                             (-> POLICY_DIV = one_cycle 1, constant 5.6, fine_tune 1)
    --seeds 5 --phase rules;  --seeds 3 --phase rules --policy constant;  --seeds 5 --report
The language-model task first trained on a 2,000-character text; at that size its validation loss measured memorising
(best at 1e-3, rising beyond), so the corpus became the generated grammar below and its runs were redone -- before any
rule was chosen.

Run: nice -n 10 .venv/bin/python bench/bench_suggestions_broad.py [--seeds 3] [--jobs 2] [--tasks a,b] [--peers [--install]]
         [--phase find,grid,candidates,rules] [--policy one_cycle|constant]
     .venv/bin/python bench/bench_suggestions_broad.py --report     (the tables from the stored results, no training)
     .venv/bin/python bench/bench_suggestions_broad.py --choose     (the choice of the divisors, no training)
Only one instance may run at a time: each rewrites the results file after every run.
"""
import argparse
import contextlib
import datetime
import functools
import io
import json
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / 'bench' / 'results' / 'suggestions_broad.json'
VENV = Path('/tmp/cyclr-peers-venv')
PEER_PKGS = ['fastai==2.8.12', 'fastcore>=2.2.22,<3', 'fasttransform', 'fastdownload', 'fastprogress==1.0.3',
             'plum-dispatch', 'beartype', 'rich', 'pandas', 'torch-lr-finder==0.2.2']
NUM_ITS = (50, 100, 200)

# ---------------------------------------------------------------------------------------------------- data

def _rng(seed): return np.random.default_rng(seed)

def signals(n, seed, regression=False, length=64):
    "Noisy 1-D waveforms: 4 classes (sine, square, sawtooth, triangle) or, for `regression`, a sine's frequency."
    r = _rng(seed)
    t = np.linspace(0, 1, length)
    f = r.uniform(2, 6, n) if not regression else r.uniform(1, 8, n)
    ph = r.uniform(0, 2 * np.pi, n)
    a = r.uniform(.5, 1.5, n)
    u = (f[:, None] * t[None] + ph[:, None] / (2 * np.pi)) % 1
    c = r.integers(0, 4, n) if not regression else np.zeros(n, dtype=np.int64)
    waves = np.stack([np.sin(2 * np.pi * u), np.sign(np.sin(2 * np.pi * u)), 2 * u - 1, 4 * np.abs(u - .5) - 1])
    x = a[:, None] * waves[c, np.arange(n)] + r.normal(0, .6, (n, length))
    x = torch.tensor(x[:, None], dtype=torch.float32)
    y = torch.tensor((f - 4.5) / 2, dtype=torch.float32)[:, None] if regression else torch.tensor(c)
    return x, y

def shapes(n, seed, size=12):
    "Noisy 12x12 images of 5 shapes (horizontal bar, vertical bar, square outline, cross, disk) at random places."
    r = _rng(seed)
    x = np.zeros((n, size, size), dtype=np.float32)
    y = r.integers(0, 5, n)
    yy, xx = np.mgrid[:size, :size]
    for i, c in enumerate(y):
        s = r.integers(4, 8); cy, cx = r.integers(s // 2 + 1, size - s // 2 - 1, 2)
        if c == 0: m = (np.abs(yy - cy) <= 1) & (np.abs(xx - cx) <= s // 2)
        elif c == 1: m = (np.abs(xx - cx) <= 1) & (np.abs(yy - cy) <= s // 2)
        elif c == 2: m = (np.maximum(np.abs(yy - cy), np.abs(xx - cx)) == s // 2)
        elif c == 3: m = ((np.abs(yy - cy) == np.abs(xx - cx)) | (np.abs(yy - cy) == -np.abs(xx - cx) + 0)) & (np.abs(yy - cy) <= s // 2)
        else: m = (yy - cy) ** 2 + (xx - cx) ** 2 <= (s / 2) ** 2
        x[i][m] = r.uniform(.6, 1.)
    x += r.normal(0, .35, x.shape).astype(np.float32)
    return torch.tensor(x[:, None]), torch.tensor(y)

WORDS = dict(  # a toy grammar: each subject has its own verbs, each verb its own endings -- structure a model can learn
    subject=['the model', 'a small network', 'the optimizer', 'every layer', 'the learning rate', 'our schedule', 'the loss',
             'a batch', 'the head', 'the body'],
    verb=[['falls', 'settles', 'drops'], ['learns', 'trains', 'fits'], ['steps', 'moves', 'jumps'], ['warms up', 'cools down'],
          ['rises', 'grows', 'climbs'], ['anneals', 'cycles', 'warms up'], ['falls', 'flattens', 'explodes'],
          ['arrives', 'shuffles'], ['learns', 'adapts'], ['freezes', 'thaws']],
    ending=['quickly', 'slowly', 'smoothly', 'again', 'at last', 'too far', 'with care', 'in one cycle', 'by a decade',
            'after warm up'])

def corpus(n_chars, seed):
    "Sentences of the toy grammar, `n_chars` characters, drawn with `seed`: generated text for the language model."
    r, out, size = _rng(seed), [], 0
    while size < n_chars:
        k = r.integers(len(WORDS['subject']))
        verbs = WORDS['verb'][k]
        sent = f"{WORDS['subject'][k]} {verbs[r.integers(len(verbs))]} {WORDS['ending'][(k + r.integers(3)) % len(WORDS['ending'])]}"
        sent = sent + ('. ' if r.random() < .7 else ', and ')
        out.append(sent); size += len(sent)
    return ''.join(out)[:n_chars]

TEXT = corpus(24000, 0) + corpus(4000, 1)   # 24,000 characters to train on, 4,000 (another draw) to validate on

def char_windows(seed, ctx=32):
    "Windows of `ctx`+1 characters of TEXT: inputs and next-character targets; the last 4,000 characters are validation."
    chars = sorted(set(TEXT))
    ids = torch.tensor([chars.index(ch) for ch in TEXT])
    cut = 24000
    def win(a, stride):
        idx = torch.arange(0, len(a) - ctx - 1, stride)
        w = torch.stack([a[i:i + ctx + 1] for i in idx])
        return w[:, :-1], w[:, 1:]
    return win(ids[:cut], 3), win(ids[cut:], 8), len(chars)

# ---------------------------------------------------------------------------------------------------- models

class CharLM(nn.Module):
    "A small causal transformer language model over characters (pre-norm, 2 layers, 2 heads, width 48)."
    def __init__(self, vocab, ctx=32, d=48):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.zeros(ctx, d))
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0., batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        self.register_buffer('mask', nn.Transformer.generate_square_subsequent_mask(ctx), persistent=False)
    def forward(self, x):
        h = self.emb(x) + self.pos[:x.shape[1]]
        return self.head(self.norm(self.body(h, mask=self.mask[:x.shape[1], :x.shape[1]], is_causal=True)))

class SeqCE(nn.Module):
    "Cross-entropy over every position of a sequence: (B, T, V) logits, (B, T) targets."
    def forward(self, out, y): return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
    def forward(self, x): return F.relu(x + self.b2(self.c2(F.relu(self.b1(self.c1(x))))))

def seeded(seed, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()

def mlp(n_in, n_out, hidden=(128,)):
    sizes, layers = (n_in, *hidden), [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:]): layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], n_out))

def conv1d(n_out, bn):
    def block(a, b): return [nn.Conv1d(a, b, 5, padding=2), *([nn.BatchNorm1d(b)] if bn else []), nn.ReLU(), nn.MaxPool1d(2)]
    return nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 32), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, n_out))

def conv2d_nobn(n_out):
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 9, n_out))

def tiny_resnet(n_out):
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), ResBlock(16),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), ResBlock(32),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, n_out))

# ---------------------------------------------------------------------------------------------------- tasks

SGD = functools.partial(torch.optim.SGD, momentum=0.9)
ADAMW = functools.partial(torch.optim.AdamW, weight_decay=1e-2)
GRID_ADAM, GRID_SGD = np.geomspace(1e-4, 1, 9), np.geomspace(1e-3, 10, 9)

def _tensor_dsets(x, y, n_valid):
    from torch.utils.data import TensorDataset
    return TensorDataset(x[n_valid:], y[n_valid:]), TensorDataset(x[:n_valid], y[:n_valid])

def _sk_classification():
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=4000, n_features=20, n_informative=10, n_classes=4, n_clusters_per_class=2,
                               class_sep=1., random_state=0)
    return _tensor_dsets(torch.tensor(x, dtype=torch.float32), torch.tensor(y), 1000)

def _sk_regression():
    from sklearn.datasets import make_regression
    x, y = make_regression(n_samples=2000, n_features=20, n_informative=10, noise=20., random_state=0)
    y = (y - y.mean()) / y.std()
    return _tensor_dsets(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None], 500)

def _digits_dsets(classes=None):
    from cyclr.data import digits
    d = digits(bs=64, classes=classes)
    return d.train.dataset, d.valid.dataset

def _chars():
    from torch.utils.data import TensorDataset
    (xt, yt), (xv, yv), _ = char_windows(0)
    return TensorDataset(xt, yt), TensorDataset(xv, yv)

VOCAB = len(set(TEXT))

TASKS = {  # name: (datasets, model(seed), opt, bs, epochs, metric, loss, grid, half)
    'digits_cnn_bn_adam': dict(data=_digits_dsets, model=lambda: __import__('cyclr.models', fromlist=['x']).simple_cnn(),
                               opt=torch.optim.Adam, bs=16, epochs=2, metric='acc', grid=GRID_ADAM, half='choose'),
    'signal_cnn_adamw': dict(data=lambda: _tensor_dsets(*signals(3000, 0), 600), model=lambda: conv1d(4, bn=False),
                             opt=ADAMW, bs=64, epochs=5, metric='acc', grid=GRID_ADAM, half='choose'),
    'shapes_cnn_sgd': dict(data=lambda: _tensor_dsets(*shapes(2500, 0), 500), model=lambda: conv2d_nobn(5),
                           opt=SGD, bs=128, epochs=8, metric='acc', grid=GRID_SGD, half='choose'),
    'charlm_transformer': dict(data=_chars, model=lambda: CharLM(VOCAB), opt=ADAMW, bs=32, epochs=1, metric='loss',
                               loss=SeqCE, grid=GRID_ADAM, half='choose'),
    'regression_mlp_adam': dict(data=_sk_regression, model=lambda: mlp(20, 1, (64, 64)), opt=torch.optim.Adam, bs=16,
                                epochs=3, metric='loss', loss=nn.MSELoss, grid=GRID_ADAM, half='choose'),
    'digits_mlp_sgd': dict(data=_digits_dsets, model=lambda: mlp(64, 10), opt=SGD, bs=64, epochs=6, metric='acc',
                           grid=GRID_SGD, half='held-out'),
    'blobs_mlp_adamw_bs256': dict(data=_sk_classification, model=lambda: mlp(20, 4, (128, 128)), opt=ADAMW, bs=256,
                                  epochs=20, metric='acc', grid=GRID_ADAM, half='held-out'),
    'shapes_resnet_sgd': dict(data=lambda: _tensor_dsets(*shapes(2500, 1), 500), model=lambda: tiny_resnet(5), opt=SGD,
                              bs=32, epochs=2, metric='acc', grid=GRID_SGD, half='held-out'),
    'signal_regression_bn': dict(data=lambda: _tensor_dsets(*signals(3000, 1, regression=True), 600),
                                 model=lambda: conv1d(1, bn=True), opt=SGD, bs=64, epochs=4, metric='loss', loss=nn.MSELoss,
                                 grid=GRID_SGD, half='held-out'),
    'finetune_digits_adam': dict(data=lambda: _digits_dsets(classes=[5, 6, 7, 8, 9]), model=None, opt=torch.optim.Adam,
                                 bs=32, epochs=2, metric='acc', grid=GRID_ADAM, half='held-out', finetune=True),
}

@functools.lru_cache(maxsize=None)
def datasets(task): return TASKS[task]['data']()

@functools.lru_cache(maxsize=None)
def _pretrained(seed):
    "simple_cnn trained on digits 0-4 (one cycle, 2 epochs, Adam 3e-3): the body the fine-tuning task starts from."
    from cyclr.data import DataLoaders
    from cyclr.learner import Learner
    from cyclr.models import simple_cnn
    tr, va = _digits_dsets(classes=[0, 1, 2, 3, 4])
    learn = Learner(DataLoaders.from_dsets(tr, va, bs=32, seed=seed), seeded(seed, lambda: simple_cnn(n_classes=5)),
                    nn.CrossEntropyLoss(), progress=False)
    learn.fit_one_cycle(2, 3e-3)
    return {k: v.clone() for k, v in learn.model.state_dict().items()}

def body_head(model): return [list(model[:-1].parameters()), list(model[-1].parameters())]

def make_model(task, seed):
    spec = TASKS[task]
    if not spec.get('finetune'): return seeded(seed, spec['model'])
    from cyclr.models import simple_cnn
    model = seeded(seed, lambda: simple_cnn(n_classes=5))
    model.load_state_dict(_pretrained(seed))
    model[-1] = seeded(seed + 100, lambda: nn.Linear(64, 5))  # a new head for the new classes
    return model

def loss_of(task): return TASKS[task].get('loss', nn.CrossEntropyLoss)()

def learner(task, seed):
    from cyclr.data import DataLoaders
    from cyclr.learner import Learner
    from cyclr.metrics import accuracy
    spec = TASKS[task]
    tr, va = datasets(task)
    ft = spec.get('finetune', False)
    return Learner(DataLoaders.from_dsets(tr, va, bs=spec['bs'], seed=1000 + seed), make_model(task, seed), loss_of(task),
                   opt_func=spec['opt'], metrics=accuracy if spec['metric'] == 'acc' else None, progress=False,
                   splitter=body_head if ft else None, lr=slice(1e-4, 1e-3) if ft else 1e-3)

def peak(task, lr):
    "What fit_one_cycle gets for a suggested `lr`: the LR itself, or slice(lr/10, lr) for the fine-tuning task's groups."
    return slice(lr / 10, lr) if TASKS[task].get('finetune') else float(lr)

# ---------------------------------------------------------------------------------------------------- jobs

def job_find(task, seed, num_it):
    "One range test through Learner.lr_find: the curve and the library's suggestions."
    torch.set_num_threads(1)
    learn = learner(task, seed)
    t0 = time.process_time()
    with warnings_off(): res = learn.lr_find(num_it=num_it, show_plot=False)
    return dict(lrs=res.lrs.tolist(), raw=[x if math.isfinite(x) else None for x in res.raw_losses.tolist()],
                stop=res.stop_reason, cpu=time.process_time() - t0, sugg=res.suggestions._asdict(),
                no_suggestion=res.no_suggestion)

def job_train(task, seed, lr, policy='one_cycle'):
    "The final metric (accuracy in [0, 1] or validation loss) of one run at `lr`, its CPU time and its optimizer steps."
    torch.set_num_threads(1)
    learn = learner(task, seed)
    t0 = time.process_time()
    n = TASKS[task]['epochs']
    with warnings_off(), contextlib.redirect_stdout(io.StringIO()):
        if policy == 'one_cycle': learn.fit_one_cycle(n, lr_max=peak(task, lr))
        else: learn.fit(n, lr=peak(task, lr))
    v = learn.recorder.values[-1]
    m = v[2] if TASKS[task]['metric'] == 'acc' else v[1]
    m = float(m) if m is not None and math.isfinite(float(m)) else None
    return dict(metric=m, cpu=time.process_time() - t0, steps=n * len(learn.dls.train))

@contextlib.contextmanager
def warnings_off():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield

def run_job(job):
    kind, key, args = job
    try: return kind, key, (job_find if kind == 'find' else job_train)(*args)
    except Exception as e: return kind, key, dict(error=f'{type(e).__name__}: {e}')

# ---------------------------------------------------------------------------------------------------- results

def load():
    if RESULTS.exists(): return json.loads(RESULTS.read_text())
    return dict(meta={}, find={}, train={}, peers={})

def save(db):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix('.tmp')
    tmp.write_text(json.dumps(db, indent=0, sort_keys=True))
    os.replace(tmp, RESULTS)

def lr_key(lr): return f'{float(lr):.4e}'
def tkey(task, seed, lr, policy='one_cycle'): return f'{task}|{seed}|{policy}|{lr_key(lr)}'

def run_jobs(db, jobs, n_proc):
    "Run `jobs` in `n_proc` processes, storing each result as it arrives."
    if not jobs: return
    t0 = time.perf_counter()
    ctx = mp.get_context('fork')
    pool = ctx.Pool(n_proc) if n_proc > 1 else None
    it = pool.imap_unordered(run_job, jobs) if pool else map(run_job, jobs)
    for k, (kind, key, out) in enumerate(it, 1):
        db['find' if kind == 'find' else 'train'][key] = out
        save(db)
        if 'error' in out: print(f'  {key}: {out["error"]}', flush=True)
        if k % 10 == 0 or k == len(jobs): print(f'  {k}/{len(jobs)} jobs, {time.perf_counter() - t0:.0f} s', flush=True)
    if pool: pool.close(); pool.join()

# ---------------------------------------------------------------------------------------------------- rules

def rules():
    "The rules read off each num_it=100 curve: name -> function (lrs, raw_losses) -> lr, the library's own and the new ones."
    import importlib
    L = importlib.import_module('cyclr.lr_find')
    def on_smoothed(rule):
        def f(lrs, raw, num_it):
            res = L.LRFindResult(lrs=np.asarray(lrs), losses=L.smooth_losses(raw), raw_losses=np.asarray(raw),
                                 suggestions=None, stop_reason='', num_it=num_it)
            with warnings_off(): return float(res.suggest((rule,))[0])
        return f
    out = {name: on_smoothed(getattr(L, name)) for name in ('minimum', 'steep', 'valley', 'slide', 'one_cycle_max')}
    for policy in getattr(L, 'POLICY_DIV', {}):  # the recommendations (res.one_cycle, res.constant, res.fine_tune)
        out[policy] = functools.partial(_recommended, policy)
    return out

def _recommended(policy, lrs, raw, num_it):
    "What `lr_find` recommends for `policy` on this raw curve: `recommend` on it less its first tenth."
    from cyclr.lr_curve import recommend
    return recommend(lrs[num_it // 10:], raw[num_it // 10:], policy)

def curve(db, task, seed, num_it=100):
    c = db['find'].get(f'{task}|{seed}|{num_it}')
    if c is None or 'error' in c: return None
    raw = np.array([np.inf if x is None else x for x in c['raw']])
    return np.asarray(c['lrs']), raw

def rule_lrs(db, task, seed):
    c = curve(db, task, seed)
    if c is None: return {}
    out = {name: f(*c, 100) for name, f in rules().items()}
    for peer, v in db['peers'].get(f'{task}|{seed}', {}).items():
        if isinstance(v, (int, float)): out[peer] = v
    return out

# ---------------------------------------------------------------------------------------------------- peers

def ensure_peer_venv(install):
    py = VENV / 'bin' / 'python'
    check = [str(py), '-c', 'import fastai, torch_lr_finder, cyclr']
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0: return True
    if not install:
        print(f'peers skipped: no venv at {VENV}; add --install to create it (pip installs fastai and torch-lr-finder there)')
        return False
    print(f'creating {VENV} ...', flush=True)
    try:
        subprocess.run([sys.executable, '-m', 'venv', '--clear', str(VENV)], check=True)
        site = subprocess.run([str(py), '-c', 'import site; print(site.getsitepackages()[0])'], check=True,
                              capture_output=True, text=True).stdout.strip()
        Path(site, 'zz_cyclr_project.pth').write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
        subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--no-deps', *PEER_PKGS], check=True, timeout=300)
        subprocess.run(check, check=True, capture_output=True)
    except (subprocess.SubprocessError, OSError) as e:
        print(f'peers skipped: could not set up the venv ({e})')
        return False
    return True

def peer_worker(task, seeds):
    "Inside the peers' venv: fastai's valley and torch-lr-finder's steepest suggestion for one task, seed after seed (JSON lines on stdout)."
    for seed in seeds: print('PEERJSON' + json.dumps([task, seed, peer_suggestions(task, seed)]), flush=True)

def peer_suggestions(task, seed):
    import matplotlib
    matplotlib.use('Agg')
    torch.set_num_threads(1)
    out = {}
    tr, va = datasets(task)
    spec = TASKS[task]
    t0 = time.process_time()
    try:
        from fastai.callback.schedule import valley as f_valley
        from fastai.data.core import DataLoaders as FDataLoaders
        from fastai.learner import Learner as FLearner
        from fastai.optimizer import OptimWrapper
        import random
        random.seed(1000 + seed); torch.manual_seed(1000 + seed)
        dls = FDataLoaders.from_dsets(tr, va, bs=spec['bs'], device=torch.device('cpu'))
        learn = FLearner(dls, make_model(task, seed), loss_func=loss_of(task), opt_func=functools.partial(OptimWrapper, opt=spec['opt']))
        with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()), warnings_off():
            res = learn.lr_find(suggest_funcs=(f_valley,), show_plot=False)
        out['fastai_valley'] = float(res[0])
        out['fastai_cpu'] = time.process_time() - t0
    except Exception as e: out['fastai_error'] = f'{type(e).__name__}: {e}'
    t0 = time.process_time()
    try:
        from torch.utils.data import DataLoader
        from torch_lr_finder import LRFinder
        model = make_model(task, seed)
        opt = spec['opt'](model.parameters(), lr=1e-7)
        g = torch.Generator().manual_seed(1000 + seed)
        finder = LRFinder(model, opt, loss_of(task), device='cpu')
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), warnings_off():
            finder.range_test(DataLoader(tr, batch_size=spec['bs'], shuffle=True, generator=g), start_lr=1e-7, end_lr=10, num_iter=100)
            ax, lr = finder.plot(suggest_lr=True)  # steepest gradient of its smoothed loss (skip_start=10, skip_end=5)
        out['tlf_steepest'] = float(lr) if lr is not None else None
        out['tlf_cpu'] = time.process_time() - t0
    except Exception as e: out['tlf_error'] = f'{type(e).__name__}: {e}'
    return out

def run_peers(todo, n_proc):
    "Run the peers' range tests, one venv process per task (one import of fastai), `n_proc` at a time; yield (task, seed, out)."
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    by_task = {}
    for t, s in todo: by_task.setdefault(t, []).append(s)
    queue, running = list(by_task.items()), []
    while queue or running:
        while queue and len(running) < n_proc:
            t, seeds = queue.pop(0)
            running.append((t, subprocess.Popen([str(VENV / 'bin' / 'python'), __file__, '--peer-worker', t, ','.join(map(str, seeds))],
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd='/tmp')))
        t, p = running.pop(0)
        for line in p.stdout:
            if line.startswith('PEERJSON'): yield tuple(json.loads(line[8:]))
        if p.wait(): print(f'  peers of {t}: exit {p.returncode}: {p.stderr.read()[-500:]}', flush=True)

# ---------------------------------------------------------------------------------------------------- report

def lost(task, rule_metric, best_metric):
    "Points lost: accuracy points below the best, or % of validation loss above it (negative = worse; None, diverged, -> -100)."
    if rule_metric is None: return -100.
    if TASKS[task]['metric'] == 'loss': return max(-100 * (rule_metric / best_metric - 1), -100.)
    if TASKS[task]['metric'] == 'acc': return 100 * (rule_metric - best_metric)
    return -100 * (rule_metric / best_metric - 1)

def summarize(db, tasks, seeds, names, policy='one_cycle'):
    "Per task: the grid's best LR and metric, each rule's LRs and (mean, worst) points lost, the compute fractions."
    rows = {}
    for task in tasks:
        grid, sign = TASKS[task]['grid'], 1 if TASKS[task]['metric'] == 'acc' else -1
        m = np.array([[(db['train'].get(tkey(task, s, lr, policy)) or {}).get('metric', None) for lr in grid] for s in seeds], dtype=float)
        if np.isnan(m).all(axis=None) or m.size == 0: continue
        filled = np.where(np.isnan(m), 0. if sign > 0 else 1e9, m)  # a diverged grid run: accuracy 0, loss 1e9
        b = int(np.argmax(sign * filled.mean(0)))
        row = dict(best_lr=float(grid[b]), best=float(filled[:, b].mean()), grid_mean=filled.mean(0).tolist(), rules={})
        for name in names:
            per_seed, lrs = [], []
            for i, s in enumerate(seeds):
                lr = rule_lrs(db, task, s).get(name)
                r = db['train'].get(tkey(task, s, lr, policy)) if lr is not None and np.isfinite(lr) else None
                if lr is not None and not np.isfinite(lr): per_seed.append(-100.); lrs.append(float('nan')); continue
                if r is None: continue
                # a run whose loss became inf/NaN (the trainer stops it with FloatingPointError) counts as -100: diverged
                per_seed.append(lost(task, r.get('metric'), filled[i, b])); lrs.append(lr)
            if len(per_seed) == len(seeds):
                row['rules'][name] = dict(mean=float(np.mean(per_seed)), worst=float(np.min(per_seed)), lrs=lrs)
        done = [db['train'][tkey(task, s, lr, policy)] for s in seeds for lr in grid if 'cpu' in db['train'].get(tkey(task, s, lr, policy), {})]
        t_train, steps = np.mean([d['cpu'] for d in done]), done[0]['steps']
        finds = [db['find'][f'{task}|{s}|100'] for s in seeds if f'{task}|{s}|100' in db['find']]
        t_find = np.mean([f['cpu'] for f in finds]); n_find = np.mean([len(f['lrs']) for f in finds])
        row['compute_cpu'] = float((t_find + t_train) / (len(grid) * t_train))
        row['compute_steps'] = float((n_find + steps) / (len(grid) * steps))
        row['train_steps'], row['train_cpu'], row['find_cpu'] = steps, float(t_train), float(t_find)
        rows[task] = row
    return rows

def print_table(rows, names, title):
    print(f'\n{title}\n(points lost vs the grid best, paired by seed: mean / worst over seeds; accuracy points, or % of the '
          'validation loss for loss tasks; + = better than the grid)')
    print(f"{'task':24s} {'half':8s} {'grid best':>16s} " + ' '.join(f'{n[:17]:>17s}' for n in names) + f" {'compute':>8s}")
    for task, row in rows.items():
        best = f"{row['best'] * (100 if TASKS[task]['metric'] == 'acc' else 1):.3g}{'%' if TASKS[task]['metric'] == 'acc' else ''} @{row['best_lr']:.0e}"
        cells = [f"{row['rules'][n]['mean']:+7.1f}/{row['rules'][n]['worst']:+7.1f}" if n in row['rules'] else f"{'-':>15s}" for n in names]
        print(f"{task:24s} {TASKS[task]['half']:8s} {best:>16s} " + ' '.join(f'{c:>17s}' for c in cells) + f" {row['compute_steps']:8.3f}")
    for half in ('choose', 'held-out'):
        sel = [r for t, r in rows.items() if TASKS[t]['half'] == half]
        cells = []
        for n in names:
            v = [r['rules'][n] for r in sel if n in r['rules']]
            cells.append(f"{np.mean([x['mean'] for x in v]):+7.1f}/{min(x['worst'] for x in v):+7.1f}" if len(v) == len(sel) and v else f"{'-':>15s}")
        print(f"{'mean over ' + half:24s} {'':8s} {'':>16s} " + ' '.join(f'{c:>17s}' for c in cells))

def report(db, tasks, seeds):
    names = list(rules()) + ['fastai_valley', 'tlf_steepest']
    db['summary'] = dict(names=names, halves={t: TASKS[t]['half'] for t in tasks}, metrics={t: TASKS[t]['metric'] for t in tasks})
    db['grids'] = {t: TASKS[t]['grid'].tolist() for t in tasks}
    for policy in ('one_cycle', 'constant'):
        s = [x for x in seeds if any(k.startswith(f'{tasks[0]}|{x}|{policy}|') for k in db['train'])]
        if not s: continue
        rows = summarize(db, tasks, s, names, policy)
        print_table(rows, names, f"{policy}: the final metric at each rule's LR vs the best of a 9-point grid, seeds {s}")
        db['summary'][policy] = dict(rows=rows, seeds=s)

# ---------------------------------------------------------------------------------------------------- choosing

WIDTHS, DIVS = (.15, .25, .4), (1., 1.4, 2., 2.8, 4., 5.6, 8., 11., 16.)
TRAINED_WIDTH, TRAINED_DIVS = .25, (1., 1.4, 2., 2.8, 4., 5.6, 8., 11.)  # candidates trained for real on the choose half

def candidate_lr(db, task, seed, width, div):
    from cyclr.lr_curve import fitted_min
    lrs, raw = curve(db, task, seed)
    return fitted_min(lrs[10:], raw[10:], width) / div

def interpolated(db, task, seed, lr, policy):
    "The metric of a run at `lr` when there is one, else interpolated (in log LR) between this seed's grid runs; the edge value outside the grid."
    r = db['train'].get(tkey(task, seed, lr, policy))
    if r is not None:  # a diverged run: accuracy 0, loss 1e9
        return r['metric'] if r.get('metric') is not None else (0. if TASKS[task]['metric'] == 'acc' else 1e9)
    grid = TASKS[task]['grid']
    m = [(db['train'].get(tkey(task, seed, g, policy)) or {}).get('metric') for g in grid]
    if any(v is None for v in m):
        worst = min if TASKS[task]['metric'] == 'acc' else max
        fin = [v for v in m if v is not None]
        m = [worst(fin) if v is None else v for v in m]
    return float(np.interp(np.log(lr), np.log(grid), m))

def choose(db, seeds, policy='one_cycle', half='choose'):
    "The fitted-minimum rule at every width and divisor, scored on `half`'s tasks by interpolating each seed's grid: the choice of POLICY_DIV."
    from cyclr.lr_curve import fitted_min
    tasks = [t for t in TASKS if TASKS[t]['half'] == half]
    print(f"\n{policy}: fitted_min(width) / div on the {half} half ({', '.join(tasks)}), metric interpolated on each seed's grid;"
          " per task the mean over seeds of the points lost, then the worst task and the mean over tasks")
    table = {}
    for w in WIDTHS:
        for d in DIVS:
            per_task = []
            for t in tasks:
                grid, sign = TASKS[t]['grid'], 1 if TASKS[t]['metric'] == 'acc' else -1
                gm = np.array([[interpolated(db, t, s, g, policy) for g in grid] for s in seeds])
                b = int(np.argmax(sign * gm.mean(0)))
                v = []
                for i, s in enumerate(seeds):
                    v.append(lost(t, interpolated(db, t, s, candidate_lr(db, t, s, w, d), policy), gm[i, b]))
                per_task.append(np.mean(v))
            table[(w, d)] = (min(per_task), float(np.mean(per_task)), per_task)
    for (w, d), (worst, mean, per) in table.items():
        print(f"  {'trained' if w == TRAINED_WIDTH and d in TRAINED_DIVS else 'interp.'} width {w:4.2f} div {d:5.1f}: worst {worst:+6.2f} mean {mean:+6.2f}   " + ' '.join(f'{x:+6.2f}' for x in per))
    best = max(table, key=lambda k: (round(table[k][0], 1), table[k][1]))
    print(f"  best (largest worst-task loss, then mean): width {best[0]}, div {best[1]}")
    return table

# ---------------------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--jobs', type=int, default=2, help='worker processes (1 torch thread each)')
    ap.add_argument('--tasks', default=','.join(TASKS))
    ap.add_argument('--phase', default='find,grid,rules', help='comma-separated subset of find,grid,candidates,rules')
    ap.add_argument('--policy', default='one_cycle', choices=('one_cycle', 'constant'), help='what the grid and rule runs train')
    ap.add_argument('--peers', action='store_true', help="fastai's valley and torch-lr-finder's steepest, in their own venv")
    ap.add_argument('--install', action='store_true', help=f'create the peers venv at {VENV} when missing (pip, PyPI)')
    ap.add_argument('--report', action='store_true', help='print the table from the stored results; train nothing')
    ap.add_argument('--choose', action='store_true', help="score the fitted-minimum rule's widths and divisors on the choose half")
    ap.add_argument('--peer-worker', nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_worker: return peer_worker(args.peer_worker[0], [int(x) for x in args.peer_worker[1].split(',')])
    torch.set_num_threads(1)
    tasks, seeds, db = args.tasks.split(','), list(range(args.seeds)), load()
    phases = args.phase.split(',')
    t0 = time.perf_counter()
    if not (args.report or args.choose):
        db['meta'] = dict(date=str(datetime.date.today()), torch=torch.__version__, python=platform.python_version(),
                          jobs=args.jobs, threads=1, device='cpu')
        print(f"broad suggestion benchmark -- {db['meta']}", flush=True)
        if 'find' in phases:
            jobs = [('find', f'{t}|{s}|{n}', (t, s, n)) for t in tasks for s in seeds for n in NUM_ITS if f'{t}|{s}|{n}' not in db['find']]
            print(f'range tests: {len(jobs)}', flush=True); run_jobs(db, jobs, args.jobs)
        if 'grid' in phases:
            jobs = [('train', tkey(t, s, lr, args.policy), (t, s, lr, args.policy)) for t in tasks for s in seeds
                    for lr in TASKS[t]['grid'] if tkey(t, s, lr, args.policy) not in db['train']]
            print(f'grid runs: {len(jobs)}', flush=True); run_jobs(db, jobs, args.jobs)
        if args.peers and ensure_peer_venv(args.install):
            todo = [(t, s) for t in tasks for s in seeds if f'{t}|{s}' not in db['peers']]
            print(f'peer range tests: {len(todo)}', flush=True)
            for task, seed, out in run_peers(todo, args.jobs):
                db['peers'][f'{task}|{seed}'] = out; save(db)
                if 'fastai_error' in out or 'tlf_error' in out: print(f'  peer {task}|{seed}: {out}', flush=True)
        if 'rules' in phases:
            jobs, seen = [], set(db['train'])
            for t in tasks:
                for s in seeds:
                    for lr in rule_lrs(db, t, s).values():
                        k = tkey(t, s, lr, args.policy)
                        if lr is None or not np.isfinite(lr) or lr <= 0 or k in seen: continue
                        seen.add(k); jobs.append(('train', k, (t, s, lr, args.policy)))
            print(f'rule runs: {len(jobs)}', flush=True); run_jobs(db, jobs, args.jobs)
        if 'candidates' in phases:
            jobs = []
            for t in tasks:
                if TASKS[t]['half'] != 'choose': continue
                for s in seeds:
                    for d in TRAINED_DIVS:
                        lr = candidate_lr(db, t, s, TRAINED_WIDTH, d)
                        k = tkey(t, s, lr, args.policy)
                        if k not in db['train'] and all(j[1] != k for j in jobs): jobs.append(('train', k, (t, s, lr, args.policy)))
            print(f'candidate runs (choose half): {len(jobs)}', flush=True); run_jobs(db, jobs, args.jobs)
        db['meta']['wall_s_last_run'] = time.perf_counter() - t0
    if args.choose:
        for policy in ('one_cycle', 'constant'):
            s = [x for x in seeds if all(tkey(t, x, g, policy) in db['train'] for t in TASKS if TASKS[t]['half'] == 'choose' for g in TASKS[t]['grid'])]
            if s: choose(db, s, policy)
        return
    report(db, tasks, seeds)
    save(db)
    print(f'\nwall time {time.perf_counter() - t0:.0f} s')

if __name__ == '__main__': main()
