"""Learner overhead: the time of one `Learner` epoch over one epoch of a hand-written PyTorch loop.

Same model (`simple_cnn(seed=0)`), data (`digits(bs=64)`: 23 training and 6 validation batches) and
optimizer (Adam, then SGD with momentum 0.9), each contestant with its own copy. One Learner epoch is a
whole `learn.fit(1, lr)` call, so the per-fit set-up is included (the conservative choice). The
hand-written epoch is the minimal idiomatic loop: train (forward, loss, backward, step, zero_grad), then
validation loss and accuracy in eval mode. The contestants run interleaved (the order rotates every
round) after a warm-up, so load on the shared machine hits them alike. Figures: process CPU time (steady
under load from other processes) and wall time, median (min-max), and the ratio of the medians. Goal: <= 1.02.

A second table measures the absolute overhead with a model that costs almost nothing (Flatten-Linear(64, 10))
on batches collated once beforehand, so that only the loop's own Python work is left.

Run: .venv/bin/python bench/bench_learner.py [--rounds N] [--profile] [--ablate]
"""
import argparse
import contextlib
import cProfile
import datetime
import functools
import io
import platform
import pstats
import statistics
import time

import numpy as np
import torch
from torch import nn

from cyclr.data import DataLoaders, digits
from cyclr.learner import Learner
from cyclr.metrics import accuracy
from cyclr.models import simple_cnn

LR = 1e-3
OPTS = {'Adam': torch.optim.Adam, 'SGD mom=0.9': functools.partial(torch.optim.SGD, momentum=0.9)}

def hand_epoch(model, opt, dls, loss_func, device=None):
    "One epoch of the loop a user writes by hand: train, then validation loss and accuracy (item-weighted means); batches moved to `device` when given."
    model.train()
    for xb, yb in dls.train:
        if device is not None: xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    tot_loss, tot_acc, n = 0., 0., 0
    with torch.no_grad():
        for xb, yb in dls.valid:
            if device is not None: xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            out = model(xb)
            tot_loss += loss_func(out, yb).item() * len(yb)
            tot_acc += accuracy(out, yb).item() * len(yb)
            n += len(yb)
    return tot_loss / n, tot_acc / n

def learner_epoch(learn):
    "One epoch through the Learner: a whole `fit(1)` call; the progress output goes to a buffer, not the terminal."
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        learn.fit(1, LR)
    return learn.recorder.values[-1]

def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

def precollated():
    "digits(bs=64) as lists of batches: no data loading cost left in the loop."
    d = digits(bs=64)
    return DataLoaders(list(d.train), list(d.valid))

def contestants(opt_func, make_model=lambda: simple_cnn(seed=0), make_dls=lambda: digits(bs=64)):
    "name -> function running one epoch, each with its own model (same architecture and initial weights) and data."
    loss_func = nn.CrossEntropyLoss()
    model = make_model()
    opt = opt_func(model.parameters(), lr=LR)
    hand_dls = make_dls()
    quiet = Learner(make_dls(), make_model(), loss_func, opt_func=opt_func, lr=LR, metrics=accuracy, progress=False)
    shown = Learner(make_dls(), make_model(), loss_func, opt_func=opt_func, lr=LR, metrics=accuracy, progress=True)
    return {'hand loop': lambda: hand_epoch(model, opt, hand_dls, loss_func),
            'Learner progress=False': lambda: learner_epoch(quiet),
            'Learner progress=True': lambda: learner_epoch(shown)}

def interleaved(fns, rounds, warmup=3):
    "{name: (cpu times, wall times)} of every function in `fns`, run in a rotating order for `rounds` rounds after `warmup`."
    names = list(fns)
    for _ in range(warmup):
        for n in names: fns[n]()
    times = {n: ([], []) for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            c0, w0 = time.process_time(), time.perf_counter()
            fns[n]()
            times[n][0].append(time.process_time() - c0); times[n][1].append(time.perf_counter() - w0)
    return times

med = statistics.median
def fmt(ts): return f"{med(ts) * 1e3:6.1f} ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f})"

def main_table(rounds):
    print(f"\n(1) simple_cnn(seed=0), digits(bs=64) with torch DataLoaders: 23 train + 6 valid batches per epoch, "
          f"lr={LR} constant; {rounds} timed epochs each, interleaved (rotating order) after 3 warm-up epochs")
    print(f"{'optimizer':12s} {'contestant':23s} {'CPU ms/epoch med (min-max)':>27s} {'ratio':>6s} "
          f"{'wall ms/epoch med (min-max)':>28s} {'ratio':>6s} {'paired CPU ratio [95% CI]':>26s}")
    for opt_name, opt_func in OPTS.items():
        times = interleaved(contestants(opt_func), rounds)
        base_c, base_w = (med(t) for t in times['hand loop'])
        for name, (tc, tw) in times.items():
            rc, rw = ('', '') if name == 'hand loop' else (f"{med(tc) / base_c:6.3f}", f"{med(tw) / base_w:6.3f}")
            paired = '' if name == 'hand loop' else paired_ratio(tc, times['hand loop'][0])
            print(f"{opt_name:12s} {name:23s} {fmt(tc):>27s} {rc:>6s} {fmt(tw):>28s} {rw:>6s} {paired:>26s}")
    print("ratio = median Learner epoch / median hand-written epoch (goal <= 1.02); paired = the median over rounds of the\n"
          "ratio of the two epochs run next to each other in that round (load that drifts slowly cancels), with a bootstrap CI")

def paired_ratio(times, hand_times, n_boot=2000):
    "The median over rounds of `times[r] / hand_times[r]` and its bootstrap 95% interval, as text."
    r = np.asarray(times) / np.asarray(hand_times)
    boot = np.median(np.random.default_rng(0).choice(r, (n_boot, len(r))), axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return f"{np.median(r):.3f} [{lo:.3f}-{hi:.3f}]"

def overhead_table(rounds):
    print(f"\n(2) absolute overhead: Flatten-Linear(64,10) on pre-collated digits batches (23 train + 6 valid); "
          f"CPU time, {rounds} interleaved epochs each")
    print(f"{'optimizer':12s} {'contestant':23s} {'CPU ms/epoch':>13s} {'overhead ms/epoch':>18s} {'us/batch':>9s}")
    for opt_name, opt_func in OPTS.items():
        times = interleaved(contestants(opt_func, tiny_model, precollated), rounds, warmup=10)
        base = med(times['hand loop'][0])
        for name, (tc, _) in times.items():
            extra = med(tc) - base
            over = ('', '') if name == 'hand loop' else (f"{extra * 1e3:+.2f}", f"{extra / 29 * 1e6:+.0f}")
            print(f"{opt_name:12s} {name:23s} {med(tc) * 1e3:13.2f} {over[0]:>18s} {over[1]:>9s}")
    print("us/batch: the overhead divided by the 29 batches of an epoch (train and valid)")

def profile_learner(opt_func, epochs=100):
    "cProfile of `epochs` Learner epochs (tiny model, pre-collated data, progress=False): cyclr functions, ms per training batch."
    learn = Learner(precollated(), tiny_model(), nn.CrossEntropyLoss(), opt_func=opt_func, lr=LR, metrics=accuracy, progress=False)
    learn.fit(1, LR)
    pr = cProfile.Profile()
    pr.enable()
    learn.fit(epochs, LR)
    pr.disable()
    batches = epochs * len(learn.dls.train)
    rows = []
    for (file, line, fn), (cc, nc, tt, ct, callers) in pstats.Stats(pr).stats.items():
        if 'cyclr' in file or fn in ("<method 'zero_grad' of 'torch._C._EngineBase' objects>",) or fn == 'zero_grad':
            rows.append((tt, ct, nc, f"{file.split('/')[-1]}:{line} {fn}"))
    rows.sort(reverse=True)
    print(f"  cProfile of fit({epochs}) (tiny model; profiling inflates Python time 2-3x): own and cumulative ms per training batch")
    print(f"  {'own':>7} {'cumul':>7} {'calls/batch':>11}  function")
    for tt, ct, nc, name in rows[:14]:
        print(f"  {tt / batches * 1e3:7.4f} {ct / batches * 1e3:7.4f} {nc / batches:11.2f}  {name}")

def ablate(opt_func, rounds=40, n_epoch=10):
    "CPU time per epoch of the Learner with one piece of its per-batch work removed (private methods patched)."
    data = precollated()
    def mk(): return Learner(data, tiny_model(), nn.CrossEntropyLoss(), opt_func=opt_func, lr=LR, metrics=accuracy, progress=False)
    variants = {'stock': mk()}
    # (a '1 zero_grad per step' variant was here: the Learner now zeroes the gradients once per step itself)
    no_rec = mk()
    no_rec.recorder.log_loss = lambda *a, **k: None
    no_rec.recorder.log_step = lambda *a, **k: None
    variants['no Recorder logging'] = no_rec
    no_ev = mk(); no_ev._event = lambda name: None
    variants['no events'] = no_ev
    model = tiny_model(); opt = opt_func(model.parameters(), lr=LR); loss_func = nn.CrossEntropyLoss()
    fns = {'hand loop': lambda: [hand_epoch(model, opt, data, loss_func) for _ in range(n_epoch)]}
    fns.update({k: (lambda l=l: l.fit(n_epoch, LR)) for k, l in variants.items()})
    times = interleaved(fns, rounds, warmup=2)
    base = med(times['hand loop'][0]) / n_epoch
    print(f"  ablation (tiny model, pre-collated data, fit({n_epoch}) per sample, {rounds} interleaved samples): CPU ms/epoch")
    for k, (tc, _) in times.items():
        e = med(tc) / n_epoch
        print(f"  {k:24s} {e * 1e3:7.3f}  overhead {(e - base) * 1e3:+.3f} ms/epoch = {(e - base) / 29 * 1e6:+.0f} us/batch")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=31, help='timed epochs per contestant in table (1)')
    ap.add_argument('--profile', action='store_true', help='also profile the Learner with cProfile')
    ap.add_argument('--ablate', action='store_true', help='also time the Learner with pieces of its per-batch work removed')
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread: steadier timings on a shared machine
    print(f"Learner epoch vs hand-written epoch -- {datetime.date.today()}, torch {torch.__version__}, "
          f"python {platform.python_version()}, torch.set_num_threads(1) -> {torch.get_num_threads()} thread, CPU")
    main_table(args.rounds)
    overhead_table(10 * args.rounds)
    for opt_name, opt_func in OPTS.items():
        if args.profile or args.ablate: print(f"\n[{opt_name}]")
        if args.profile: profile_learner(opt_func)
        if args.ablate: ablate(opt_func)

if __name__ == '__main__': main()
