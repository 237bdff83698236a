"""A broad benchmark of LR suggestions for one cycle (issue 11): is the range test's answer as good as a grid?

27 small tasks, all on CPU with data that ships with scikit-learn or that this script generates (no downloads), in
four rounds; each round's tasks were fixed here before any of their results were seen:

| task | model | optimizer | bs | budget | metric | round |
|---|---|---|---|---|---|---|
| digits_cnn_bn_adam     | simple_cnn (BatchNorm)             | Adam           | 16  | 2 ep (short)   | accuracy   | 1 (choose)   |
| signal_cnn_adamw       | 1-D CNN, no BatchNorm              | AdamW wd 1e-2  | 64  | 5 ep           | accuracy   | 1 (choose)   |
| shapes_cnn_sgd         | 2-D CNN, no BatchNorm, shapes      | SGD mom 0.9    | 128 | 8 ep (longer)  | accuracy   | 1 (choose)   |
| charlm_transformer     | causal transformer, char-level LM  | AdamW wd 1e-2  | 32  | 1 ep           | valid loss | 1 (choose)   |
| regression_mlp_adam    | MLP on make_regression             | Adam           | 16  | 3 ep           | valid loss | 1 (choose)   |
| digits_mlp_sgd         | MLP                                | SGD mom 0.9    | 64  | 6 ep           | accuracy   | 1 (held out) |
| blobs_mlp_adamw_bs256  | MLP on make_classification         | AdamW wd 1e-2  | 256 | 20 ep (longer) | accuracy   | 1 (held out) |
| shapes_resnet_sgd      | residual net (BatchNorm), shapes   | SGD mom 0.9    | 32  | 2 ep           | accuracy   | 1 (held out) |
| signal_regression_bn   | 1-D CNN with BatchNorm, regression | SGD mom 0.9    | 64  | 4 ep           | valid loss | 1 (held out) |
| finetune_digits_adam   | simple_cnn pretrained on digits 0-4, new head for 5-9, groups (body, head), slice(lr/10, lr) | Adam | 32 | 2 ep | accuracy | 1 (held out) |
| signal_gru_adam        | GRU over a 1-D signal              | Adam           | 32  | 3 ep           | accuracy   | 2            |
| shapes_vit_adamw       | small vision transformer           | AdamW wd 1e-2  | 64  | 6 ep           | accuracy   | 2            |
| digits_logreg_sgd      | logistic regression                | SGD (plain)    | 128 | 10 ep          | accuracy   | 2            |
| digits_cnn_bn_sgd_bs256| simple_cnn (BatchNorm)             | SGD mom 0.9 wd 5e-4 | 256 | 15 ep     | accuracy   | 2            |
| friedman_mlp_ln_adamw  | MLP with LayerNorm, make_friedman1 | AdamW wd 1e-2  | 32  | 4 ep           | valid loss | 2            |
| digits_autoencoder_adam| MLP autoencoder (8 numbers)        | Adam           | 64  | 8 ep           | valid loss | 2            |
| cancer_mlp_bn_sgd      | MLP with BatchNorm, breast cancer  | SGD mom 0.9    | 32  | 15 ep          | accuracy   | 3 (held out) |
| digits_lstm_rmsprop    | LSTM over the image's rows         | RMSprop        | 64  | 4 ep           | accuracy   | 3 (held out) |
| shapes_cnn_gn_adam     | 2-D CNN with GroupNorm and dropout | Adam           | 32  | 3 ep           | accuracy   | 3 (held out) |
| diabetes_mlp_sgd       | MLP on the diabetes table          | SGD mom 0.9    | 16  | 30 ep          | valid loss | 3 (held out) |
| chargru_lm_adamw       | GRU char-level LM                  | AdamW wd 1e-2  | 64  | 3 ep           | valid loss | 3 (held out) |
| signal_cnn_bn_nesterov_bs16 | 1-D CNN with BatchNorm        | SGD Nesterov 0.9 | 16 | 2 ep          | accuracy   | 3 (held out) |
| wine_logreg_adam       | logistic regression, wine table    | Adam           | 16  | 20 ep          | accuracy   | 4 (held out) |
| shapes_cnn_bn_adamw_bs128 | 2-D CNN with BatchNorm          | AdamW wd 5e-2  | 128 | 6 ep           | accuracy   | 4 (held out) |
| signal_mlp_sgd         | MLP on the 1-D signals             | SGD (plain)    | 32  | 5 ep           | accuracy   | 4 (held out) |
| digits_deep_mlp_adam   | MLP, 6 hidden layers               | Adam           | 32  | 4 ep           | accuracy   | 4 (held out) |
| signal_regression_cnn_adam | 1-D CNN, no BatchNorm, regression | Adam        | 32  | 4 ep           | valid loss | 4 (held out) |

Round 1 chose a rule on its "choose" five and reported on its other five; round 2 chose on those ten and reported on
its six; round 3 chose on sixteen and reported on its six; round 4 chose on those 22 (their `half` in TASKS is now
"choose") and reports on its five ("held-out"). What each round found is in nbs/tutorial_lr_suggestions.ipynb.

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

Choosing the rules (`--choose`): `fitted_min` and `valley_end` (climbs 0.1-0.5) at fit widths 0.15-0.4 decades,
divided by 1 to 16, read off the num_it 50, 100 and 200 curves of the choose set and scored by interpolating each
seed's runs (grid, candidates, rules) in log LR; ranked by the mean over tasks averaged over the three num_its (rounds
2 and 3 ranked by the worst task). Round 4 gave cyclr.lr_curve.POLICY_RULES (one_cycle: valley_end climb 0.5, fit
width 0.25 / 8; constant: climb 0.3 / 16). `--bound` measures what any such rule can do (leave-one-task-out, a
divisor fitted to each task afterwards, medians of several sweeps).

The stored results (bench/results/suggestions_broad.json, 2026-12-02, 2 worker processes of 1 thread on a shared
2-core CPU) came from, in this order (rounds 2 to 4 with --tasks set to their new tasks, then --report on all):
    --seeds 5 --phase find,grid --peers --install        (range tests, the one-cycle grid, the peers)
    --seeds 5 --phase candidates                         (round 1: fitted-minimum candidates on its choose half)
    --seeds 3 --phase grid,candidates --policy constant
    --choose;  --seeds 5 --phase rules;  --seeds 3 --phase grid,rules --policy constant;  --seeds 5 --report
The language-model task first trained on a 2,000-character text; at that size its validation loss measured memorising
(best at 1e-3, rising beyond), so the corpus became the generated grammar below and its runs were redone -- before any
rule was chosen.

Run: nice -n 10 .venv/bin/python bench/bench_suggestions_broad.py [--seeds 3] [--jobs 2] [--tasks a,b] [--peers [--install]]
         [--phase find,grid,candidates,rules] [--policy one_cycle|constant]
     .venv/bin/python bench/bench_suggestions_broad.py --report     (the tables from the stored results, no training)
     .venv/bin/python bench/bench_suggestions_broad.py --choose     (the choice of the rules, no training)
     .venv/bin/python bench/bench_suggestions_broad.py --bound --seeds 5
                                   (what one range test can do: leave-one-task-out, a per-task oracle divisor, n_runs)
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

class GRUClassifier(nn.Module):
    "A one-layer GRU over a (B, 1, T) signal read as T steps of one feature; the last hidden state -> classes."
    def __init__(self, n_out, hidden=32):
        super().__init__()
        self.rnn, self.head = nn.GRU(1, hidden, batch_first=True), nn.Linear(hidden, n_out)
    def forward(self, x): return self.head(self.rnn(x.transpose(1, 2))[1][-1])

class TinyViT(nn.Module):
    "A small vision transformer on 12x12 images: 16 patches of 3x3, width 32, 2 pre-norm layers, 2 heads, mean pooling."
    def __init__(self, n_out, d=32, patch=3, size=12):
        super().__init__()
        self.patch, n = patch, (size // patch) ** 2
        self.embed, self.pos = nn.Linear(patch * patch, d), nn.Parameter(torch.zeros(n, d))
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0., batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, n_out)
    def forward(self, x):
        p = F.unfold(x, self.patch, stride=self.patch).transpose(1, 2)  # (B, patches, patch*patch)
        return self.head(self.norm(self.body(self.embed(p) + self.pos)).mean(1))

def mlp_ln(n_in, n_out, hidden=(64, 64)):
    "An MLP with LayerNorm and GELU after each hidden linear layer."
    sizes, layers = (n_in, *hidden), []
    for a, b in zip(sizes[:-1], sizes[1:]): layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], n_out))

def autoencoder():
    "An MLP autoencoder of 8x8 digits through 8 numbers: (B, 1, 8, 8) -> (B, 64) reconstruction in [0, 1]."
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 32), nn.ReLU(),
                         nn.Linear(32, 64), nn.Sigmoid())

class RowLSTM(nn.Module):
    "An LSTM reading an 8x8 digit row by row (8 steps of 8 features); the last hidden state -> classes."
    def __init__(self, n_out, hidden=48):
        super().__init__()
        self.rnn, self.head = nn.LSTM(8, hidden, batch_first=True), nn.Linear(hidden, n_out)
    def forward(self, x): return self.head(self.rnn(x[:, 0])[1][0][-1])

class CharGRU(nn.Module):
    "A character-level GRU language model (embedding 32, one GRU layer of 96)."
    def __init__(self, vocab, d=32, hidden=96):
        super().__init__()
        self.emb, self.rnn, self.head = nn.Embedding(vocab, d), nn.GRU(d, hidden, batch_first=True), nn.Linear(hidden, vocab)
    def forward(self, x): return self.head(self.rnn(self.emb(x))[0])

def cnn_gn(n_out):
    "A 2-D CNN with GroupNorm and dropout."
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(.2), nn.Linear(32 * 9, n_out))

def mlp_bn(n_in, n_out, hidden=(64, 64)):
    "An MLP with BatchNorm after each hidden linear layer."
    sizes, layers = (n_in, *hidden), []
    for a, b in zip(sizes[:-1], sizes[1:]): layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], n_out))

def conv2d_bn(n_out):
    "A 2-D CNN with BatchNorm."
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 9, n_out))

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

def _friedman():
    from sklearn.datasets import make_friedman1
    x, y = make_friedman1(n_samples=3000, n_features=10, noise=1., random_state=0)
    y = (y - y.mean()) / y.std()
    return _tensor_dsets(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None], 600)

def _digits_reconstruction():
    "Digits as (image, flattened image): the autoencoder's inputs and targets."
    from torch.utils.data import TensorDataset
    tr, va = _digits_dsets()
    def xx(ds):
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        return TensorDataset(x, x.flatten(1))
    return xx(tr), xx(va)

def _sk_table(loader, n_valid, regression=False):
    "A table that ships with scikit-learn, standardised, shuffled once with a fixed seed, the first `n_valid` rows for validation."
    x, y = loader(return_X_y=True)
    order = _rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x = (x - x.mean(0)) / x.std(0)
    if regression: return _tensor_dsets(torch.tensor(x, dtype=torch.float32), torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[:, None], n_valid)
    return _tensor_dsets(torch.tensor(x, dtype=torch.float32), torch.tensor(y), n_valid)

def _chars_stride(stride):
    from torch.utils.data import TensorDataset
    (xt, yt), (xv, yv), _ = char_windows(0)
    return TensorDataset(xt[::stride], yt[::stride]), TensorDataset(xv, yv)

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
                           grid=GRID_SGD, half='choose'),
    'blobs_mlp_adamw_bs256': dict(data=_sk_classification, model=lambda: mlp(20, 4, (128, 128)), opt=ADAMW, bs=256,
                                  epochs=20, metric='acc', grid=GRID_ADAM, half='choose'),
    'shapes_resnet_sgd': dict(data=lambda: _tensor_dsets(*shapes(2500, 1), 500), model=lambda: tiny_resnet(5), opt=SGD,
                              bs=32, epochs=2, metric='acc', grid=GRID_SGD, half='choose'),
    'signal_regression_bn': dict(data=lambda: _tensor_dsets(*signals(3000, 1, regression=True), 600),
                                 model=lambda: conv1d(1, bn=True), opt=SGD, bs=64, epochs=4, metric='loss', loss=nn.MSELoss,
                                 grid=GRID_SGD, half='choose'),
    'finetune_digits_adam': dict(data=lambda: _digits_dsets(classes=[5, 6, 7, 8, 9]), model=None, opt=torch.optim.Adam,
                                 bs=32, epochs=2, metric='acc', grid=GRID_ADAM, half='choose', finetune=True),
    # Added in the second round, before any of their results were seen; the ten above became the choose set then (the
    # first held-out half had been reported on, so it could no longer count as unseen).
    'signal_gru_adam': dict(data=lambda: _tensor_dsets(*signals(3000, 2), 600), model=lambda: GRUClassifier(4),
                            opt=torch.optim.Adam, bs=32, epochs=3, metric='acc', grid=GRID_ADAM, half='choose'),
    'shapes_vit_adamw': dict(data=lambda: _tensor_dsets(*shapes(2500, 2), 500), model=lambda: TinyViT(5), opt=ADAMW,
                             bs=64, epochs=6, metric='acc', grid=GRID_ADAM, half='choose'),
    'digits_logreg_sgd': dict(data=_digits_dsets, model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                              opt=torch.optim.SGD, bs=128, epochs=10, metric='acc', grid=GRID_SGD, half='choose'),
    'digits_cnn_bn_sgd_bs256': dict(data=_digits_dsets, model=lambda: __import__('cyclr.models', fromlist=['x']).simple_cnn(),
                                    opt=functools.partial(torch.optim.SGD, momentum=0.9, weight_decay=5e-4), bs=256,
                                    epochs=15, metric='acc', grid=GRID_SGD, half='choose'),
    'friedman_mlp_ln_adamw': dict(data=_friedman, model=lambda: mlp_ln(10, 1), opt=ADAMW, bs=32, epochs=4, metric='loss',
                                  loss=nn.MSELoss, grid=GRID_ADAM, half='choose'),
    'digits_autoencoder_adam': dict(data=_digits_reconstruction, model=autoencoder, opt=torch.optim.Adam, bs=64, epochs=8,
                                    metric='loss', loss=nn.MSELoss, grid=GRID_ADAM, half='choose'),
    # Round 3, added before any of their results were seen; the six above joined the choose set then.
    'cancer_mlp_bn_sgd': dict(data=lambda: _sk_table(__import__('sklearn.datasets', fromlist=['x']).load_breast_cancer, 150),
                              model=lambda: mlp_bn(30, 2), opt=SGD, bs=32, epochs=15, metric='acc', grid=GRID_SGD, half='choose'),
    'digits_lstm_rmsprop': dict(data=_digits_dsets, model=lambda: RowLSTM(10), opt=torch.optim.RMSprop, bs=64, epochs=4,
                                metric='acc', grid=GRID_ADAM, half='choose'),
    'shapes_cnn_gn_adam': dict(data=lambda: _tensor_dsets(*shapes(2500, 3), 500), model=lambda: cnn_gn(5), opt=torch.optim.Adam,
                               bs=32, epochs=3, metric='acc', grid=GRID_ADAM, half='choose'),
    'diabetes_mlp_sgd': dict(data=lambda: _sk_table(__import__('sklearn.datasets', fromlist=['x']).load_diabetes, 90, regression=True),
                             model=lambda: mlp(10, 1, (32,)), opt=SGD, bs=16, epochs=30, metric='loss', loss=nn.MSELoss,
                             grid=GRID_SGD, half='choose'),
    'chargru_lm_adamw': dict(data=lambda: _chars_stride(2), model=lambda: CharGRU(VOCAB), opt=ADAMW, bs=64, epochs=3,
                             metric='loss', loss=SeqCE, grid=GRID_ADAM, half='choose'),
    'signal_cnn_bn_nesterov_bs16': dict(data=lambda: _tensor_dsets(*signals(3000, 4), 600), model=lambda: conv1d(4, bn=True),
                                        opt=functools.partial(torch.optim.SGD, momentum=0.9, nesterov=True), bs=16, epochs=2,
                                        metric='acc', grid=GRID_SGD, half='choose'),
    # Round 4, added before any of their results were seen; round 3's six joined the choose set then.
    'wine_logreg_adam': dict(data=lambda: _sk_table(__import__('sklearn.datasets', fromlist=['x']).load_wine, 48),
                             model=lambda: nn.Linear(13, 3), opt=torch.optim.Adam, bs=16, epochs=20, metric='acc',
                             grid=GRID_ADAM, half='held-out'),
    'shapes_cnn_bn_adamw_bs128': dict(data=lambda: _tensor_dsets(*shapes(2500, 4), 500), model=lambda: conv2d_bn(5),
                                      opt=functools.partial(torch.optim.AdamW, weight_decay=5e-2), bs=128, epochs=6,
                                      metric='acc', grid=GRID_ADAM, half='held-out'),
    'signal_mlp_sgd': dict(data=lambda: _tensor_dsets(*signals(3000, 5), 600), model=lambda: mlp(64, 4, (128,)),
                           opt=torch.optim.SGD, bs=32, epochs=5, metric='acc', grid=GRID_SGD, half='held-out'),
    'digits_deep_mlp_adam': dict(data=_digits_dsets, model=lambda: mlp(64, 10, (64,) * 6), opt=torch.optim.Adam, bs=32,
                                 epochs=4, metric='acc', grid=GRID_ADAM, half='held-out'),
    'signal_regression_cnn_adam': dict(data=lambda: _tensor_dsets(*signals(3000, 6, regression=True), 600),
                                       model=lambda: conv1d(1, bn=False), opt=torch.optim.Adam, bs=32, epochs=4,
                                       metric='loss', loss=nn.MSELoss, grid=GRID_ADAM, half='held-out'),
}

HALVES = ('choose', 'held-out')

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
    for policy in getattr(L, 'POLICY_RULES', {}):  # the recommendations (res.one_cycle, res.constant, res.fine_tune)
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
    for half in HALVES:
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

WIDTHS, CLIMBS = (.15, .25, .4), (.1, .2, .3, .5)
DIVS = (1., 1.4, 2., 2.8, 4., 5.6, 8., 11., 16.)
TRAINED_WIDTH, TRAINED_DIVS = .25, (1., 1.4, 2., 2.8, 4., 5.6, 8., 11.)  # round 1: fitted-minimum candidates trained for real

def anchors(db, task, seed, num_it):
    "Every candidate anchor of a recommendation on one range test (less its first tenth): name -> LR."
    from cyclr.lr_curve import anchor_lr, fitted_min
    c = curve(db, task, seed, num_it)
    if c is None: return {}
    lrs, raw = c[0][num_it // 10:], c[1][num_it // 10:]
    out = {f'fitted_min w{w}': fitted_min(lrs, raw, w) for w in WIDTHS}
    out.update({f'valley_end c{c_} w{w}': anchor_lr(lrs, raw, c_, w) for c_ in CLIMBS for w in WIDTHS})
    return out

@functools.lru_cache(maxsize=None)
def _seed_runs(task, seed, policy):
    "(log LRs, metrics) of every stored run of `task` on `seed` for `policy` (grid, candidates and rules), sorted by LR."
    db, pre = _DB[0], f'{task}|{seed}|{policy}|'
    bad = 0. if TASKS[task]['metric'] == 'acc' else 1e9   # a diverged run: accuracy 0, loss 1e9
    pts = sorted((float(k[len(pre):]), bad if v.get('metric') is None else v['metric'])
                 for k, v in db['train'].items() if k.startswith(pre) and 'cpu' in v)
    return np.log([p[0] for p in pts]), np.array([p[1] for p in pts])

_DB = [None]

def candidate_lr(db, task, seed, width, div):
    "Round 1's trained candidates: the fitted minimum of the num_it=100 test over `div`."
    return anchors(db, task, seed, 100)[f'fitted_min w{width}'] / div

def interpolated(db, task, seed, lr, policy):
    "The metric at `lr`: interpolated in log LR between this seed's runs (every stored LR: grid, candidates, rules); exact where one ran there."
    _DB[0] = db
    x, y = _seed_runs(task, seed, policy)
    return float(np.interp(np.log(lr), x, y))

def choose(db, seeds, policy='one_cycle', halves=('choose', 'held-out')):
    "Every anchor and divisor, scored on the tasks of `halves` at num_it 50, 100 and 200 by interpolating each seed's runs: the choice of POLICY_RULES."
    tasks = [t for t in TASKS if TASKS[t]['half'] in halves and all(f'{t}|{s}|100' in db['find'] for s in seeds)
             and all(tkey(t, s, g, policy) in db['train'] for s in seeds for g in TASKS[t]['grid'])]
    print(f"\n{policy}: anchor / div on {len(tasks)} tasks ({', '.join(tasks)}), seeds {seeds}, the metric interpolated between "
          "each seed's runs;\nper num_it the mean over tasks and the worst task of the points lost (mean over seeds); ranked by "
          "the mean averaged over the three num_its")
    best_of = {}
    for t in tasks:
        grid, sign = TASKS[t]['grid'], 1 if TASKS[t]['metric'] == 'acc' else -1
        gm = np.array([[interpolated(db, t, s, g, policy) for g in grid] for s in seeds])
        best_of[t] = gm[:, int(np.argmax(sign * gm.mean(0)))]
    found = {(t, s, n): anchors(db, t, s, n) for t in tasks for s in seeds for n in NUM_ITS}
    table = {}
    for name in found[(tasks[0], seeds[0], 100)]:
        for d in DIVS:
            per_n = []
            for n in NUM_ITS:
                per_task = [np.mean([lost(t, interpolated(db, t, s, found[(t, s, n)][name] / d, policy), best_of[t][i])
                                     for i, s in enumerate(seeds)]) for t in tasks]
                per_n.append((float(np.mean(per_task)), min(per_task), per_task))
            table[(name, d)] = per_n
    rank = sorted(table, key=lambda k: -np.mean([m for m, _, _ in table[k]]))
    for k in rank[:12]:
        print(f"  {k[0]:22s} / {k[1]:4.1f}: " + '  '.join(f'n{n} {m:+6.2f}/{w:+6.1f}' for n, (m, w, _) in zip(NUM_ITS, table[k]))
              + f"   mean {np.mean([m for m, _, _ in table[k]]):+.2f}")
    print(f"  best: {rank[0][0]} / {rank[0][1]}")
    return table

def bound(db, seeds, climb=.5, width=.25):
    """How much of the recommendation's error one range test can remove: the rule's own figures, its leave-one-task-out
    choice, a divisor fitted to each task afterwards (an oracle no rule has), and the median of several sweeps (`n_runs`).
    All on the num_it=100 curves, the metric interpolated between each seed's runs, one cycle, points lost (mean over seeds)."""
    from cyclr.lr_curve import POLICY_RULES, anchor_lr
    _DB[0] = db
    tasks = [t for t in TASKS if all(f'{t}|{s}|100' in db['find'] for s in seeds)]
    best = {}
    for t in tasks:
        grid, sign = TASKS[t]['grid'], 1 if TASKS[t]['metric'] == 'acc' else -1
        gm = np.array([[interpolated(db, t, s, g, 'one_cycle') for g in grid] for s in seeds])
        best[t] = gm[:, int(np.argmax(sign * gm.mean(0)))]
    end = {}
    for t in tasks:
        for s in seeds:
            for n in NUM_ITS:
                lrs, raw = curve(db, t, s, n)
                end[t, s, n] = anchor_lr(lrs[n // 10:], raw[n // 10:], climb, width)
    def score(t, lr_of, ns=(100,)):  # mean points lost over seeds (and num_its) of the LR lr_of(seed, num_it)
        return float(np.mean([lost(t, interpolated(db, t, s, lr_of(s, n), 'one_cycle'), best[t][i]) for i, s in enumerate(seeds) for n in ns]))
    divs = np.exp(np.linspace(0, np.log(32), 21))
    rows = {}
    div = POLICY_RULES['one_cycle'][1]
    rows[f'the rule: valley end / {div:g}'] = [score(t, lambda s, n: end[t, s, n] / div) for t in tasks]
    S = np.array([[score(t, lambda s, n, d=d: end[t, s, n] / d, NUM_ITS) for t in tasks] for d in divs])  # divisor x task
    S100 = np.array([[score(t, lambda s, n, d=d: end[t, s, n] / d) for t in tasks] for d in divs])
    rows['divisor chosen on the other tasks (leave-one-task-out)'] = [S100[int(np.argmax(np.delete(S, j, 1).mean(1))), j]
                                                                      for j in range(len(tasks))]
    rows['divisor fitted to each task afterwards (oracle)'] = [max(score(t, lambda s, n, d=d: end[t, s, n] / d) for d in divs) for t in tasks]
    for k in (3, 5):
        def med(t, s, n, k=k):  # the median over k sweeps: this seed's and the next k-1 seeds' curves
            return float(np.median([end[t, seeds[(seeds.index(s) + j) % len(seeds)], n] for j in range(k)]))
        rows[f'median of {k} sweeps (as n_runs={k}) / {div:g}'] = [score(t, lambda s, n: med(t, s, n) / div) for t in tasks]
    print(f"\nwhat one range test can do: valley end (climb {climb}, width {width}) on {len(tasks)} tasks, seeds {seeds}, num_it=100 "
          "unless said;\npoints lost per task (mean over seeds); the mean over tasks, the worst task, and how many tasks lose more than 1 point")
    for name, v in rows.items():
        v = np.array(v)
        print(f"  {name:66s} mean {v.mean():+6.2f}  worst {v.min():+6.1f}  tasks below -1: {(v < -1).sum():2d}/{len(v)}")
    return rows

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
    ap.add_argument('--bound', action='store_true', help='what one range test can do: leave-one-task-out, a per-task oracle divisor, medians of sweeps')
    ap.add_argument('--peer-worker', nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_worker: return peer_worker(args.peer_worker[0], [int(x) for x in args.peer_worker[1].split(',')])
    torch.set_num_threads(1)
    tasks, seeds, db = args.tasks.split(','), list(range(args.seeds)), load()
    phases = args.phase.split(',')
    t0 = time.perf_counter()
    if not (args.report or args.choose or args.bound):
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
    if args.bound: return bound(db, seeds)
    if args.choose:
        for policy in ('one_cycle', 'constant'):
            choose(db, list(range(5 if policy == 'one_cycle' else 3)), policy)
        return
    report(db, tasks, seeds)
    save(db)
    print(f'\nwall time {time.perf_counter() - t0:.0f} s')

if __name__ == '__main__': main()
