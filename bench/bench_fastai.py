"""Peer comparison with fastai 2.8 (optional): loop overhead and the one-cycle quality of fastai's own suggestions.

fastai 2.8 needs fastcore>=2.2, which conflicts with the project's nbdev 2 pins, so it never enters the project's
requirements: this script makes its own virtual environment under /tmp (once; about a minute), installs fastai and
its few pure-Python dependencies there with `--no-deps`, and reuses this interpreter's torch, numpy, scikit-learn and
matplotlib through a .pth file placed after the venv's own packages (so the venv's fastcore 2 wins). Then it re-runs
itself inside that venv. If the install fails (no network, a new dependency), it says so and stops. Because it
installs from PyPI, it does so only when asked (`--install`); without it (as in `make bench`) it runs only if that venv
is there already, and otherwise says how to enable it.

(1) Epoch time, interleaved, CPU time medians: hand-written loop, cyclr Learner, fastai Learner (progress and logging
    off; fastai's own Adam, and torch's Adam through OptimWrapper), simple_cnn, digits bs 64, all on the same
    fastai DataLoaders so that only the training loops differ.
(2) fastai's `lr_find` suggestions (valley, minimum, steep, slide, and cyclr's candidate lr_min/4 read off fastai's
    own curve) and fastai's `fit_one_cycle(3)` accuracy at each, against fastai's one cycle at the 8 grid LRs
    np.geomspace(1e-4, 1, 8): simple_cnn, digits bs 16, fastai's defaults (its Adam, wd=0.01), 3 seeds.

Run: .venv/bin/python bench/bench_fastai.py --install [--rounds N]
"""
import argparse
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

VENV = Path('/tmp/cyclr-fastai-venv')
REPO = Path(__file__).resolve().parent.parent
PKGS = ['fastai==2.8.12', 'fastcore>=2.2.22,<3', 'fasttransform', 'fastdownload', 'fastprogress==1.0.3',
        'plum-dispatch', 'beartype', 'rich', 'pandas']  # fastprogress 1.1 needs python-fasthtml: 1.0.3 does not

def venv_python(): return VENV / 'bin' / 'python'

def ensure_venv(install):
    "Create the fastai venv under /tmp (when `install`) unless it works already; False (with a message) when there is none."
    check = [str(venv_python()), '-c', 'import fastai, fastcore, cyclr; assert fastcore.__version__ >= "2.2"']
    if venv_python().exists() and subprocess.run(check, capture_output=True).returncode == 0: return True
    if not install:
        print(f"fastai comparison skipped: no fastai venv at {VENV}; run `python bench/bench_fastai.py --install` "
              "to create it (pip installs fastai 2.8 and its pure-Python dependencies there, never in the project)")
        return False
    print(f"creating {VENV} with {', '.join(PKGS)} (--no-deps) ...", flush=True)
    try:
        subprocess.run([sys.executable, '-m', 'venv', '--clear', str(VENV)], check=True)
        site = subprocess.run([str(venv_python()), '-c', 'import site; print(site.getsitepackages()[0])'],
                              check=True, capture_output=True, text=True).stdout.strip()
        # after the venv's own packages: torch & co. from this interpreter, cyclr from the repository
        Path(site, 'zz_cyclr_project.pth').write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
        subprocess.run([str(venv_python()), '-m', 'pip', 'install', '-q', '--no-deps', *PKGS], check=True, timeout=300)
        subprocess.run(check, check=True, capture_output=True)
    except (subprocess.SubprocessError, OSError) as e:
        print(f"fastai comparison skipped: could not set up the venv ({e})")
        return False
    return True

# ---------------------------------------------------------------------------------------------------------------
# everything below runs inside the fastai venv

def worker(rounds):
    import contextlib, datetime, functools, io, platform, random, statistics, time
    import numpy as np, torch
    from torch import nn
    import fastai, fastcore
    from fastai.data.core import DataLoaders as FDataLoaders
    from fastai.learner import Learner as FLearner
    from fastai.callback.schedule import lr_find as _  # noqa: F401  (patches Learner.lr_find / fit_one_cycle)
    from fastai.callback.schedule import valley as f_valley, minimum as f_minimum, steep as f_steep, slide as f_slide
    from fastai.optimizer import OptimWrapper
    from fastai.metrics import accuracy as f_accuracy
    from cyclr.data import digits
    from cyclr.learner import Learner
    from cyclr.metrics import accuracy
    from cyclr.models import simple_cnn

    torch.set_num_threads(1)
    med = statistics.median
    print(f"fastai peer comparison -- {datetime.date.today()}, fastai {fastai.__version__}, fastcore {fastcore.__version__}, "
          f"torch {torch.__version__}, python {platform.python_version()}, torch.set_num_threads(1) -> {torch.get_num_threads()} thread, CPU")

    def fdls(bs, seed):
        "fastai DataLoaders over cyclr's digits datasets (same split), shuffled by a seeded Python RNG."
        d = digits(bs=bs)
        random.seed(seed)
        return FDataLoaders.from_dsets(d.train.dataset, d.valid.dataset, bs=bs, device=torch.device('cpu'))

    # (1) overhead --------------------------------------------------------------------------------------------
    lr = 1e-3
    loss_func = nn.CrossEntropyLoss()
    h_dls = fdls(64, 0)
    h_model = simple_cnn(seed=0)
    h_opt = torch.optim.Adam(h_model.parameters(), lr=lr)
    def hand():
        h_model.train()
        for xb, yb in h_dls.train:
            loss = loss_func(h_model(xb), yb); loss.backward(); h_opt.step(); h_opt.zero_grad()
        h_model.eval(); tl = ta = n = 0
        with torch.no_grad():
            for xb, yb in h_dls.valid:
                out = h_model(xb); tl += loss_func(out, yb).item() * len(yb); ta += accuracy(out, yb).item() * len(yb); n += len(yb)
    c_dls = fdls(64, 0)
    c_learn = Learner((c_dls.train, c_dls.valid), simple_cnn(seed=0), loss_func, metrics=accuracy, progress=False)
    def make_f(opt_func):
        learn = FLearner(fdls(64, 0), simple_cnn(seed=0), loss_func=nn.CrossEntropyLoss(), opt_func=opt_func, metrics=f_accuracy)
        def run():
            with learn.no_bar(), learn.no_logging(): learn.fit(1, lr)
        return run
    fns = {'hand loop': hand, 'cyclr Learner': lambda: c_learn.fit(1, lr),
           'fastai Learner (fastai Adam)': make_f(fastai.optimizer.Adam),
           'fastai Learner (torch Adam)': make_f(functools.partial(OptimWrapper, opt=torch.optim.Adam))}
    names = list(fns)
    for _ in range(3):
        for n in names: fns[n]()
    times = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            c0 = time.process_time(); fns[n](); times[n].append(time.process_time() - c0)
    base = med(times['hand loop'])
    print(f"\n(1) epoch CPU time, simple_cnn(seed=0), digits bs 64 through fastai DataLoaders (23 + 6 batches), Adam lr={lr}, "
          f"{rounds} interleaved epochs each after 3 warm-up epochs")
    for n, ts in times.items():
        print(f"  {n:30s} {med(ts) * 1e3:7.1f} ms ({min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f})  ratio {med(ts) / base:.3f}")

    # (2) fastai's suggestions ----------------------------------------------------------------------------------
    def lr_min_div4(lrs, losses, num_it):
        "cyclr's candidate on fastai's curve: LR at the smoothed loss minimum (after fastai's trimming) / 4."
        lrs, losses = torch.tensor(lrs[num_it // 10:-5]), torch.tensor(losses[num_it // 10:-5])
        return float(lrs[losses.argmin()]) / 4
    def f_learner(seed):
        return FLearner(fdls(16, seed), simple_cnn(seed=seed), loss_func=nn.CrossEntropyLoss(), metrics=f_accuracy)
    def f_train(seed, lr_max):
        learn = f_learner(seed)
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(3, float(lr_max))
        return float(learn.recorder.values[-1][2])
    grid = np.geomspace(1e-4, 1, 8)
    seeds = (0, 1, 2)
    sugg, acc_rule, acc_grid = {}, {}, np.zeros((len(seeds), len(grid)))
    for i, seed in enumerate(seeds):
        learn = f_learner(seed)
        with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):
            res = learn.lr_find(suggest_funcs=(f_valley, f_minimum, f_steep, f_slide), show_plot=False)
        s = dict(zip(('valley', 'minimum', 'steep', 'slide'), res))
        s['lr_min/4 (cyclr candidate)'] = lr_min_div4(learn.recorder.lrs, [float(l) for l in learn.recorder.losses], 100)
        for name, v in s.items():
            sugg.setdefault(name, []).append(v); acc_rule.setdefault(name, []).append(f_train(seed, v))
        for j, g in enumerate(grid): acc_grid[i, j] = f_train(seed, g)
    mean = acc_grid.mean(0) * 100
    b = int(np.argmax(mean))
    print(f"\n(2) fastai: lr_find + fit_one_cycle(3) (fastai defaults: its Adam, wd=0.01), simple_cnn, digits bs 16, seeds {list(seeds)}")
    print("  grid LR    " + ' '.join(f'{g:8.1e}' for g in grid))
    print("  mean acc % " + ' '.join(f'{a:8.2f}' for a in mean))
    print(f"  best grid LR {grid[b]:.1e}: {mean[b]:.2f} %")
    for name in sugg:
        a = np.mean(acc_rule[name]) * 100
        print(f"  {name:27s} LR median {np.median(sugg[name]):.2e}  acc {a:6.2f} %  vs best {a - mean[b]:+.2f}")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=21)
    ap.add_argument('--install', action='store_true', help=f'create the fastai venv at {VENV} if it is missing')
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker: return worker(args.rounds)
    if not ensure_venv(args.install): return
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    subprocess.run([str(venv_python()), __file__, '--worker', '--rounds', str(args.rounds)], check=True, env=env, cwd='/tmp')

if __name__ == '__main__': main()
