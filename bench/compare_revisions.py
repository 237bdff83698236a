"""Before and after in one run: bench_learner's and bench_lr_find's overhead ratios for cyclr at two git revisions.

Each revision is checked out in its own worktree (`git worktree add --detach`), and a worker process imports cyclr from
there (PYTHONPATH) and the contestants of this checkout's bench_learner.py and bench_lr_find.py: the same model,
data, optimizers and hand-written loops for both revisions. Workers of the two revisions alternate, `--pairs` times,
so load from other processes on the shared machine hits them alike. A worker times every contestant interleaved
(rotating order, after a warm-up) in process CPU time with one torch thread, and reports ratios of medians:

  fit(1) progress=False / hand   one Learner epoch (a whole `fit(1)`) over one hand-written epoch   goal <= 1.02
  fit(1) progress=True / hand    the same with the progress bar and table                          goal <= 1.02
  progress on / off              what showing progress costs
  lr_find / hand                 `lr_find(num_it=100)` over 100 hand-written steps                goal <= 1.05
  Learner.lr_find / hand         `Learner.lr_find(num_it=100)` over the same                        goal <= 1.05

The table gives, per revision, the median of the workers' ratios and their min-max.

Run: .venv/bin/python bench/compare_revisions.py [--old 5a5b3e4] [--new HEAD] [--pairs 4] [--rounds 9]
"""
import argparse
import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

BENCH = pathlib.Path(__file__).resolve().parent
REPO = BENCH.parent
ROWS = [('fit(1) progress=False / hand', 1.02), ('fit(1) progress=True / hand', 1.02), ('progress on / off', None),
        ('lr_find / hand', 1.05), ('Learner.lr_find / hand', 1.05)]

def worker(rounds: int):
    "Time the contestants with the cyclr on sys.path; print {row name + optimizer: ratio} as JSON."
    import torch
    torch.set_num_threads(1)
    import cyclr
    sys.path.insert(0, str(BENCH))
    import bench_learner as bl
    import bench_lr_find as blf
    med = statistics.median
    out = {'cyclr': cyclr.__file__}
    for opt_name, opt_func in bl.OPTS.items():
        t = {k: med(v[0]) for k, v in bl.interleaved(bl.contestants(opt_func), rounds).items()}
        out[f'fit(1) progress=False / hand|{opt_name}'] = t['Learner progress=False'] / t['hand loop']
        out[f'fit(1) progress=True / hand|{opt_name}'] = t['Learner progress=True'] / t['hand loop']
        out[f'progress on / off|{opt_name}'] = t['Learner progress=True'] / t['Learner progress=False']
    for opt_name, opt_func in blf.OPTS.items():
        t = {k: med(v[0]) for k, v in blf.interleaved(blf.contestants(opt_func), max(rounds // 2, 3)).items()}
        out[f'lr_find / hand|{opt_name}'] = t['lr_find(...)'] / t['100 hand-written steps']
        out[f'Learner.lr_find / hand|{opt_name}'] = t['Learner.lr_find()'] / t['100 hand-written steps']
    print(json.dumps(out))

def checkout(rev: str, where: pathlib.Path) -> str:
    "A detached worktree of `rev` at `where`; the commit's short hash."
    subprocess.run(['git', '-C', str(REPO), 'worktree', 'add', '--detach', '--force', str(where), rev],
                   check=True, capture_output=True)
    return subprocess.run(['git', '-C', str(where), 'rev-parse', '--short', 'HEAD'], check=True, capture_output=True,
                          text=True).stdout.strip()

def run_worker(root: pathlib.Path, rounds: int) -> dict:
    env = {**os.environ, 'PYTHONPATH': str(root), 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    p = subprocess.run([sys.executable, __file__, '--worker', '--rounds', str(rounds)], env=env, cwd=root,
                       capture_output=True, text=True)
    if p.returncode: raise RuntimeError(f'worker for {root} failed:\n{p.stderr[-3000:]}')
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if not res.pop('cyclr').startswith(str(root)): raise RuntimeError(f'the worker for {root} imported another cyclr')
    return res

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--old', default='5a5b3e4', help='revision before')
    ap.add_argument('--new', default='HEAD', help='revision after')
    ap.add_argument('--pairs', type=int, default=4, help='worker runs per revision, alternating old/new')
    ap.add_argument('--rounds', type=int, default=9, help="timed epochs per contestant in a worker (range tests: half)")
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker: return worker(args.rounds)
    import torch
    with tempfile.TemporaryDirectory(prefix='cyclr_revs_') as tmp:
        roots = {'old': pathlib.Path(tmp) / 'old', 'new': pathlib.Path(tmp) / 'new'}
        try:
            revs = {k: checkout(getattr(args, k), roots[k]) for k in roots}
            print(f"cyclr {args.old} ({revs['old']}) vs {args.new} ({revs['new']}) -- torch {torch.__version__}, "
                  f"1 thread, process CPU time; {args.pairs} workers per revision, alternating; each worker: "
                  f"{args.rounds} interleaved epochs per Learner contestant, {max(args.rounds // 2, 3)} range tests per "
                  f"lr_find contestant (simple_cnn, digits bs=64)", flush=True)
            results = {'old': [], 'new': []}
            for i in range(args.pairs):
                for k in (('old', 'new') if i % 2 == 0 else ('new', 'old')):
                    results[k].append(run_worker(roots[k], args.rounds))
                    print(f'  worker {len(results[k])}/{args.pairs} {k} done', file=sys.stderr, flush=True)
        finally:
            for root in roots.values():
                with contextlib.suppress(Exception):
                    subprocess.run(['git', '-C', str(REPO), 'worktree', 'remove', '--force', str(root)], capture_output=True)
    def cell(vals): return f"{statistics.median(vals):.3f} ({min(vals):.3f}-{max(vals):.3f})"
    print(f"{'ratio':30s} {'optimizer':12s} {'old ' + revs['old']:>22s} {'new ' + revs['new']:>22s} {'goal':>6s}")
    for row, goal in ROWS:
        for opt in ('Adam', 'SGD mom=0.9'):
            key = f'{row}|{opt}'
            print(f"{row:30s} {opt:12s} {cell([r[key] for r in results['old']]):>22s} "
                  f"{cell([r[key] for r in results['new']]):>22s} {'<= ' + str(goal) if goal else '':>6s}")
    print("median (min-max) over the workers of each worker's ratio of median CPU times")

if __name__ == '__main__': main()
