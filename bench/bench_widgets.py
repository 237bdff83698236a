"""Time from a widget value change to the finished redraw (new PNG in the Image widget), Agg backend, no browser
(issue goal: under 50 ms for a 1,000-step schedule). A value change runs the whole update synchronously -- rebuild
the schedule, evaluate it, update the lines, draw, encode the PNG -- so timing the assignment times the redraw.
Prints the median and min-max wall time of repeated changes, the median CPU time of this process (less
sensitive to other jobs on a shared machine) and the 1-minute load average.

Run: .venv/bin/python bench/bench_widgets.py"""
import os
import time
from collections import namedtuple
from types import SimpleNamespace

import matplotlib
matplotlib.use('Agg')
import numpy as np

from cyclr.widgets import lr_find_picker, schedule_explorer

REPEATS = 30


def timed(widget, values):
    "Wall median, min, max and CPU median (ms) of `widget.value = v` over REPEATS changes through `values`, after a warm-up."
    widget.value = values[-1]
    wall, cpu = [], []
    for k in range(REPEATS):
        t0, c0 = time.perf_counter(), time.process_time()
        widget.value = values[k % len(values)]
        wall.append((time.perf_counter() - t0) * 1e3); cpu.append((time.process_time() - c0) * 1e3)
    return np.median(wall), min(wall), max(wall), np.median(cpu)


def main():
    ex = schedule_explorer('one_cycle', total_steps=1000)
    rows = [('one_cycle: lr_max slider', lambda: timed(ex.controls['lr_max'], [1e-2, 3e-3]))]
    def log_compare():
        ex.log_scale.value, ex.compare.value = True, 'cosine'
        return timed(ex.controls['pct_start'], [0.3, 0.25])
    rows.append(('one_cycle, log axis, cosine compared: pct_start', log_compare))
    cyc = schedule_explorer('cyclic', total_steps=1000)
    rows.append(('cyclic: step_size slider', lambda: timed(cyc.controls['step_size'], [100, 200])))
    rows.append(('policy dropdown (one_cycle <-> sgdr)', lambda: timed(schedule_explorer().policy, ['sgdr', 'one_cycle'])))
    lrs = np.logspace(-7, 1, 100)
    losses = 2 - 1 / (1 + np.exp(-2 * (np.log10(lrs) + 3)))
    res = SimpleNamespace(curve=(lrs, losses, np.arange(len(lrs))), mode='exp', score_name='loss',
                          suggestions=namedtuple('S', 'valley')(3e-4))
    picker = lr_find_picker(res)
    rows.append(('lr_find_picker: lr slider', lambda: timed(picker.slider, [1e-3, 1e-4])))
    print(f'value change -> redraw finished (1,000 steps, Agg), median (min-max) of {REPEATS} changes; '
          f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores')
    for name, fn in rows:
        med, lo, hi, cpu = fn()
        print(f'  {name:48s} {med:6.1f} ms  ({lo:.1f}-{hi:.1f})   cpu {cpu:5.1f} ms')


if __name__ == '__main__':
    main()
