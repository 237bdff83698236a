"""Time to evaluate schedules on long step arrays (issue goal: one_cycle LR + momentum at 1,000,000
iterations in under 50 ms). Prints the median and min-max of repeated runs, and the same for a
hand-written NumPy one-cycle (fastai's formula) as a reference point.

Run: .venv/bin/python bench/bench_schedules.py"""
import math
import time

import numpy as np

from cyclr.schedules import cyclic, one_cycle, sgdr

N, REPEATS = 1_000_000, 15

def timed(fn):
    "Median, min and max wall time of `fn()` in ms over REPEATS runs (after one warm-up)."
    fn()
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter(); fn(); times.append((time.perf_counter() - t0) * 1e3)
    return np.median(times), min(times), max(times)

def hand_one_cycle(it, lr_max, total, pct=0.25, div=25., div_final=1e5):
    "fastai's two-phase cosine one cycle written directly in NumPy, LR only."
    pos = it / total
    up = pos < pct
    p = np.where(up, pos / pct, (pos - pct) / (1 - pct))
    start = np.where(up, lr_max / div, lr_max)
    end = np.where(up, lr_max, lr_max / div_final)
    return end + (start - end) * (1 + np.cos(math.pi * p)) / 2

def main():
    it = np.arange(N)
    s = one_cycle(1e-2, total_steps=N)
    rows = [('one_cycle lr + mom (s.lr_mom)', lambda: s.lr_mom(it)),
            ('one_cycle lr + mom (s(), s.mom())', lambda: (s(it), s.mom(it))),
            ('one_cycle lr', lambda: s(it)),
            ('hand-written NumPy one cycle, lr', lambda: hand_one_cycle(it, 1e-2, N)),
            ('one_cycle three_phase lr + mom', lambda: (lambda t: (t(it), t.mom(it)))(one_cycle(1e-2, N, three_phase=True))),
            ('cyclic triangular2 lr', lambda: cyclic(1e-3, 6e-3, 2000, mode='triangular2')(it)),
            ('sgdr T_mult=2 lr', lambda: sgdr(0.1, 1000, 2)(it))]
    print(f'{N:,} iterations, median (min-max) of {REPEATS} runs')
    for name, fn in rows:
        med, lo, hi = timed(fn)
        print(f'  {name:36s} {med:7.1f} ms  ({lo:.1f}-{hi:.1f})')

if __name__ == '__main__':
    main()
