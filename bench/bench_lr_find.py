"""Overhead of the LR range test: `lr_find(num_it=100)` and `Learner.lr_find(num_it=100)` over 100 hand-written
training steps on the same model (`simple_cnn(seed=0)`), data (`digits(bs=64)`, so the 23-batch loader is looped
over) and optimizer (Adam, then SGD with momentum 0.9). Goal: <= 1.05.

Every contestant does the same arithmetic: 100 optimizer steps with the LR rising geometrically from 1e-7 to 10
(`stop_div=False`, so no early stop). The hand-written loop sets the LR, then forward, loss, backward, step,
zero_grad; it does not record or restore anything (its model is reset between runs, outside the timing). The range
tests include what they do beyond that: snapshot and restore of the model, optimizer, RNG and loader state, the
loss smoothing, the suggestion rules and `clr_bounds`. Each contestant has its own model, optimizer and loaders; they
run interleaved in a rotating order after a warm-up. Figures: process CPU time and wall time, median (min-max),
ratio of medians. The last lines time the fixed costs (snapshot + restore, suggestion rules) on their own.

Run: .venv/bin/python bench/bench_lr_find.py [--rounds N]
"""
import argparse
import contextlib
import datetime
import functools
import io
import platform
import statistics
import time
import timeit

import torch
from torch import nn

from cyclr import lr_find as lf_mod
from cyclr.data import DataLoaders, digits
from cyclr.learner import Learner
from cyclr.lr_find import lr_find, minimum, slide, steep, sweep_lrs, valley
from cyclr.models import simple_cnn

NUM_IT, START_LR, END_LR = 100, 1e-7, 10.
OPTS = {'Adam': torch.optim.Adam, 'SGD mom=0.9': functools.partial(torch.optim.SGD, momentum=0.9)}
med = statistics.median

def hand_steps(model, dl, loss_func, opt, lrs):
    "The loop a user writes: set the LR, forward, loss, backward, step, zero_grad; looping over `dl` until `len(lrs)` steps."
    model.train()
    i = 0
    while i < len(lrs):
        for xb, yb in dl:
            for g in opt.param_groups: g['lr'] = lrs[i]
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            i += 1
            if i == len(lrs): break

def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

def precollated():
    "The digits(bs=64) training batches as a list: no data loading cost left."
    return list(digits(bs=64).train)

def contestants(opt_func, make_model=lambda: simple_cnn(seed=0), make_dl=lambda: digits(bs=64).train):
    "name -> function running one range test of NUM_IT steps (or the hand-written equivalent), each on its own copies."
    loss_func, lrs = nn.CrossEntropyLoss(), sweep_lrs(START_LR, END_LR, NUM_IT).tolist()
    h_model, h_dl = make_model(), make_dl()
    h_opt = opt_func(h_model.parameters(), lr=START_LR)
    h_start = {k: v.clone() for k, v in h_model.state_dict().items()}
    def hand():
        hand_steps(h_model, h_dl, loss_func, h_opt, lrs)
        return NUM_IT
    def reset_hand():  # untimed: every hand run starts from the same weights, as every range test does
        h_model.load_state_dict(h_start); h_opt.state.clear()
    f_model, f_dl = make_model(), make_dl()
    f_opt = opt_func(f_model.parameters(), lr=1e-3)
    def standalone():
        res = lr_find(f_model, f_dl, loss_func, f_opt, start_lr=START_LR, end_lr=END_LR, num_it=NUM_IT,
                      stop_div=False, show_plot=False)
        return len(res.lrs)
    learn = Learner(DataLoaders(make_dl()), make_model(), loss_func, opt_func=opt_func, progress=False)
    def method():
        with contextlib.redirect_stdout(io.StringIO()):
            res = learn.lr_find(start_lr=START_LR, end_lr=END_LR, num_it=NUM_IT, stop_div=False, show_plot=False)
        return len(res.lrs)
    return {'100 hand-written steps': (hand, reset_hand), 'lr_find(...)': (standalone, None),
            'Learner.lr_find()': (method, None)}

def interleaved(fns, rounds, warmup=2):
    "{name: (cpu times, wall times)}: every function of `fns` (fn, untimed reset) in a rotating order, `rounds` times."
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fn, reset = fns[n]; fn()
            if reset: reset()
    times = {n: ([], []) for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            fn, reset = fns[n]
            c0, w0 = time.process_time(), time.perf_counter()
            steps = fn()
            times[n][0].append(time.process_time() - c0); times[n][1].append(time.perf_counter() - w0)
            assert steps == NUM_IT, f"{n} did {steps} steps, not {NUM_IT}"
            if reset: reset()
    return times

def fmt(ts): return f"{med(ts) * 1e3:6.1f} ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f})"

def fixed_costs(opt_func):
    "Time of the parts of a range test that do not depend on the steps: snapshot + restore, and the suggestion rules."
    model = simple_cnn(seed=0)
    opt = opt_func(model.parameters(), lr=1e-3)
    dl = digits(bs=64).train
    res = lr_find(model, dl, nn.CrossEntropyLoss(), opt, num_it=NUM_IT, show_plot=False)
    # an optimizer with state, as after some training, so the snapshot has moments to copy
    nn.CrossEntropyLoss()(model(next(iter(dl))[0]), next(iter(dl))[1]).backward(); opt.step(); opt.zero_grad()
    out = {}
    snap_cls = getattr(lf_mod, '_Snapshot', None)
    if snap_cls is not None:
        def snap_restore(): snap_cls(model, opt, (dl,)).restore()
        out['snapshot + restore'] = min(timeit.repeat(snap_restore, number=20, repeat=5)) / 20
    for name, rule in (('minimum', minimum), ('steep', steep), ('valley', valley), ('slide', slide)):
        out[f'rule {name}'] = min(timeit.repeat(lambda: res.suggest((rule,)), number=50, repeat=5)) / 50
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=15, help='timed runs per contestant')
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread: steadier timings on a shared machine
    print(f"LR range test vs hand-written steps -- {datetime.date.today()}, torch {torch.__version__}, "
          f"python {platform.python_version()}, torch.set_num_threads(1) -> {torch.get_num_threads()} thread, CPU")
    print(f"simple_cnn(seed=0), digits(bs=64) (23 batches, looped), {NUM_IT} steps, LR {START_LR:g} -> {END_LR:g} "
          f"geometric, stop_div=False; {args.rounds} timed runs each, interleaved after 2 warm-up runs")
    print(f"{'optimizer':12s} {'contestant':23s} {'CPU ms med (min-max)':>24s} {'ratio':>6s} {'wall ms med (min-max)':>24s} {'ratio':>6s}")
    for opt_name, opt_func in OPTS.items():
        times = interleaved(contestants(opt_func), args.rounds)
        base_c, base_w = (med(t) for t in times['100 hand-written steps'])
        for name, (tc, tw) in times.items():
            rc, rw = ('', '') if name.startswith('100') else (f"{med(tc) / base_c:6.3f}", f"{med(tw) / base_w:6.3f}")
            print(f"{opt_name:12s} {name:23s} {fmt(tc):>24s} {rc:>6s} {fmt(tw):>24s} {rw:>6s}")
    print("ratio = median range test / median 100 hand-written steps (goal <= 1.05)")
    rounds = 8 * args.rounds
    print(f"\nabsolute overhead: Flatten-Linear(64,10) on the same batches collated beforehand (a list); CPU time, "
          f"{rounds} interleaved runs each")
    print(f"{'optimizer':12s} {'contestant':23s} {'CPU ms/run':>11s} {'overhead ms/run':>16s} {'us/step':>8s}")
    for opt_name, opt_func in OPTS.items():
        times = interleaved(contestants(opt_func, tiny_model, precollated), rounds, warmup=5)
        base = med(times['100 hand-written steps'][0])
        for name, (tc, _) in times.items():
            extra = med(tc) - base
            over = ('', '') if name.startswith('100') else (f"{extra * 1e3:+.2f}", f"{extra / NUM_IT * 1e6:+.0f}")
            print(f"{opt_name:12s} {name:23s} {med(tc) * 1e3:11.2f} {over[0]:>16s} {over[1]:>8s}")
    for opt_name, opt_func in OPTS.items():
        costs = fixed_costs(opt_func)
        print(f"fixed costs, {opt_name}: " + ', '.join(f"{k} {v * 1e3:.2f} ms" for k, v in costs.items()))

if __name__ == '__main__': main()
