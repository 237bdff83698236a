"""How good is each suggestion rule's LR for one cycle? Accuracy of `Learner.fit_one_cycle(3, lr_max=suggestion)`
on digits (bs 16) against the best LR of a grid of 8, `np.geomspace(1e-4, 1, 8)`, on several models and optimizers.

For each model, optimizer and seed (the seed fixes the initial weights and the training order; the train/valid split
is digits' fixed one), one `Learner.lr_find()` with the default settings (1e-7 -> 10, 100 steps, stop_div=True)
gives every rule's suggestion; then one one-cycle run (3 epochs, the Learner's defaults: div=25, pct_start=0.25,
moms=(0.95, 0.85, 0.95)) per suggested LR and per grid LR, from the same initial weights and data order. The score
is the validation accuracy after the last epoch (360 items: one item is 0.28 points), averaged over the seeds.
The grid's best is picked on that same validation set, so it is an optimistic reference.

Rules: cyclr's `minimum`, `steep`, `valley`, `slide`, `one_cycle_max` (LR at the loss minimum / 3) and the candidate
`one_cycle_peak` below (LR at the loss minimum / 4). `lr_min` is the LR at the minimum of the smoothed loss.
Compute: one rule costs one range test + one training run; the grid costs 8 training runs.

Run: .venv/bin/python bench/bench_suggestions.py [--seeds 3] [--jobs 2] [--no-sgd] [--grid-points 8]
(`--grid-points 15 --seeds 5`: a finer grid, np.geomspace(1e-4, 1, 15), for studying where the best LR sits; ~12 min)
"""
import argparse
import contextlib
import datetime
import functools
import io
import multiprocessing as mp
import platform
import time

import numpy as np
import torch
from torch import nn

from cyclr.data import digits
from cyclr.learner import Learner
from cyclr.lr_find import minimum, one_cycle_max, slide, steep, valley
from cyclr.metrics import accuracy
from cyclr.models import simple_cnn

EPOCHS, BS = 3, 16

def one_cycle_peak(lrs, losses, div=4.):
    "A peak LR for one cycle: the LR at which the smoothed loss of the range test is lowest, divided by `div` (4)."
    lrs, losses = np.asarray(lrs, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    return float(lrs[np.argmin(losses)] / div)

RULES = (minimum, steep, valley, slide, one_cycle_max, one_cycle_peak)

def mlp(seed):
    "Flatten-Linear(64,128)-ReLU-Linear(128,10): no BatchNorm, so a sharper optimum than the CNNs."
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

MODELS = {'simple_cnn': lambda seed: simple_cnn(seed=seed),
          'mlp': mlp,
          'wide_cnn': lambda seed: simple_cnn(widths=(32, 64, 128), seed=seed)}
OPTS = {'Adam': torch.optim.Adam, 'SGD mom=0.9': functools.partial(torch.optim.SGD, momentum=0.9)}

def make_learner(model, opt, seed):
    dls = digits(bs=BS)
    dls.train.generator.manual_seed(1000 + seed)  # the training order varies with the seed, the split does not
    return Learner(dls, MODELS[model](seed), nn.CrossEntropyLoss(), opt_func=OPTS[opt], metrics=accuracy, progress=False)

def train(model, opt, seed, lr):
    "Validation accuracy after a one-cycle run at peak LR `lr`, and its CPU time."
    learn = make_learner(model, opt, seed)
    t0 = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()): learn.fit_one_cycle(EPOCHS, lr_max=float(lr))
    return learn.recorder.values[-1][2], time.process_time() - t0

def task(args):
    "One model/optimizer/seed: the range test, then a run per grid LR and per distinct suggested LR."
    model, opt, seed, grid = args
    torch.set_num_threads(1)
    learn = make_learner(model, opt, seed)
    t0 = time.process_time()
    res = learn.lr_find(suggest_funcs=RULES, show_plot=False)
    t_find = time.process_time() - t0
    lrs, losses, _ = res.curve
    keep = slice(res.num_it // 10, max(len(lrs) - 5, res.num_it // 10 + 3))  # what the rules see
    out = dict(model=model, opt=opt, seed=seed, t_find=t_find, find_steps=len(res.lrs), stop=res.stop_reason,
               lr_min=float(lrs[keep][np.argmin(losses[keep])]), sugg=res.suggestions._asdict(), grid={}, rule={}, t_train=[])
    for lr in grid:
        acc, t = train(model, opt, seed, lr)
        out['grid'][float(lr)] = acc; out['t_train'].append(t)
    done = dict(out['grid'])
    for name, lr in out['sugg'].items():
        if not (np.isfinite(lr) and lr > 0): out['rule'][name] = float('nan'); continue
        if lr not in done: done[lr] = train(model, opt, seed, lr)[0]
        out['rule'][name] = done[lr]
    return out

def gmean(x): return float(np.exp(np.mean(np.log(x))))

def report(results, models, opts, seeds, GRID):
    steps_run = EPOCHS * len(make_learner('mlp', 'Adam', 0).dls.train)
    summary = {r.__name__: {} for r in RULES}
    ratios = {}
    for opt in opts:
        for model in models:
            rs = [r for r in results if r['model'] == model and r['opt'] == opt]
            acc = np.array([[r['grid'][float(lr)] for lr in GRID] for r in rs]) * 100
            mean = acc.mean(0)
            b = int(np.argmax(mean))
            lr_min = gmean([r['lr_min'] for r in rs])
            near = [lr for lr, a in zip(GRID, mean) if a >= mean[b] - 0.5]
            t_train, t_find = np.mean([t for r in rs for t in r['t_train']]), np.mean([r['t_find'] for r in rs])
            steps_find = np.mean([r['find_steps'] for r in rs])
            n = len(GRID)
            ratios[(model, opt)] = ((t_find + t_train) / (n * t_train), (steps_find + steps_run) / (n * steps_run))
            print(f"\n{model} / {opt}: lr_min (LR at the smoothed loss minimum, geometric mean over seeds) = {lr_min:.2e}; "
                  f"range test {steps_find:.0f} steps ({', '.join(sorted({r['stop'] for r in rs}))})")
            print("  grid LR   " + ' '.join(f'{lr:8.1e}' for lr in GRID))
            print("  mean acc %" + ' '.join(f'{a:8.2f}' for a in mean))
            print(f"  best grid LR {GRID[b]:.1e}: {mean[b]:.2f} % (min-max over seeds {acc[:, b].min():.2f}-{acc[:, b].max():.2f}); "
                  f"grid LRs within 0.5 pt: {near[0]:.1e}..{near[-1]:.1e} = lr_min x {near[0] / lr_min:.3f}..{near[-1] / lr_min:.3f}; "
                  f"best / lr_min = {GRID[b] / lr_min:.3f}")
            print(f"  {'rule':15s} {'LR median':>10s} {'LR min-max':>19s} {'acc %':>7s} {'vs best':>8s}")
            for rule in RULES:
                name = rule.__name__
                lrs = [r['sugg'][name] for r in rs]
                a = np.mean([r['rule'][name] for r in rs]) * 100
                summary[name][(model, opt)] = a - mean[b]
                print(f"  {name:15s} {np.median(lrs):10.2e} {min(lrs):9.1e}-{max(lrs):.1e} {a:7.2f} {a - mean[b]:+8.2f}")
            print(f"  compute of one rule / the grid: CPU time {ratios[(model, opt)][0]:.3f} "
                  f"(range test {t_find:.2f} s + run {t_train:.2f} s vs {n} runs), optimizer steps {ratios[(model, opt)][1]:.3f}")
    keys = [(m, o) for o in opts for m in models]
    print(f"\nSummary: one-cycle accuracy at the rule's LR minus the best of the {len(GRID)}-LR grid (points, mean of {len(seeds)} seeds)")
    print(f"  {'rule':15s} " + ' '.join(f"{(m[:10] + '/' + o[:4]):>16s}" for m, o in keys) + f" {'mean':>7s} {'worst':>7s}")
    for name, d in summary.items():
        v = [d[k] for k in keys]
        print(f"  {name:15s} " + ' '.join(f'{x:16.2f}' for x in v) + f" {np.mean(v):7.2f} {min(v):7.2f}")
    print(f"  {'compute (CPU)':15s} " + ' '.join(f'{ratios[k][0]:16.3f}' for k in keys) + "   one rule / the grid")
    print(f"  {'compute (steps)':15s} " + ' '.join(f'{ratios[k][1]:16.3f}' for k in keys))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--jobs', type=int, default=2, help='worker processes (1 torch thread each)')
    ap.add_argument('--no-sgd', action='store_true', help='Adam only (halves the run time)')
    ap.add_argument('--grid-points', type=int, default=8, help='LRs in the grid np.geomspace(1e-4, 1, n)')
    ap.add_argument('--models', default=','.join(MODELS), help='comma-separated subset of ' + ','.join(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    models, opts = args.models.split(','), ['Adam'] if args.no_sgd else list(OPTS)
    seeds = list(range(args.seeds))
    print(f"Suggestion rules vs an LR grid for fit_one_cycle -- {datetime.date.today()}, torch {torch.__version__}, "
          f"python {platform.python_version()}, torch.set_num_threads(1) in each of {args.jobs} worker processes, CPU")
    print(f"digits(bs={BS}) ({len(make_learner('mlp', 'Adam', 0).dls.train)} batches/epoch), fit_one_cycle({EPOCHS}) "
          f"with the Learner's defaults, seeds {seeds}, grid np.geomspace(1e-4, 1, {args.grid_points})")
    t0 = time.perf_counter()
    grid = np.geomspace(1e-4, 1, args.grid_points)
    tasks = [(m, o, s, grid) for o in opts for m in models for s in seeds]
    if args.jobs > 1:
        with mp.get_context('fork').Pool(args.jobs) as pool: results = pool.map(task, tasks, chunksize=1)
    else: results = [task(t) for t in tasks]
    report(results, models, opts, seeds, grid)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")

if __name__ == '__main__': main()
