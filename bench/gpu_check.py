"""The GPU paths of cyclr, verified in one command (issue 13).

Run (repository root):
    .venv/bin/python bench/gpu_check.py            # full: >= 5 timing repetitions; under 8 minutes on one GPU
    .venv/bin/python bench/gpu_check.py --quick    # 3 repetitions, shorter range tests
    .venv/bin/python bench/gpu_check.py --device cpu --quick
        # developer dry run on a machine without a GPU: the "CUDA" checks run their logic on the CPU where they
        # can (bf16, restore, resume, DDP over gloo, timing with small sizes); fp16 and peak memory stay SKIPPED.

It prints a header (torch, device, options), then one line per check:
    NAME  RESULT  DETAILS
RESULT is PASS, FAIL (DETAILS holds the exception text or the failed condition) or SKIPPED (why: no CUDA,
one GPU only, ...). The exit status is 1 when any line is FAIL, else 0; on a CPU-only machine every CUDA line
is SKIPPED (no CUDA) and only the short CPU section runs.

The lines:
  pytest tests/test_cuda.py        the CUDA test subset (tests skipped without CUDA), run as a subprocess: its summary.
  amp fp16 + GradScaler            fit_one_cycle and lr_find with mixed_precision='fp16' while the GradScaler skips
                                   steps (provoked with init_scale=2**40): the Recorder's and the range test's step
                                   counts equal the optimizer's real steps (counted by a step post-hook), and the
                                   number of skipped batches is > 0.
  amp bf16                         the same with mixed_precision='bf16' (no scaler: every batch is a step).
  lr_find restore (CUDA)           after learn.lr_find: weights, BatchNorm buffers, optimizer state, the CPU and all
                                   CUDA RNG states (torch.cuda.get_rng_state_all) and the DataLoader generator are
                                   bit-identical to before (a Dropout layer consumes CUDA RNG during the test).
  exact resume (CUDA)              deterministic algorithms, CUBLAS_WORKSPACE_CONFIG=:4096:8: a 2-epoch one-cycle fit
                                   saving after every epoch vs a fresh Learner resumed from epoch 1's checkpoint
                                   (fit_one_cycle(..., resume_from=...)): every weight torch.equal. The loss is a
                                   one-hot cross-entropy (NLLLoss refuses deterministic mode on CUDA), the pooling a mean
                                   (AdaptiveAvgPool2d backward too).
  ddp nccl x1 / ddp nccl x2        a DDP fit in 1 spawned process (MASTER_ADDR/PORT, RANK, WORLD_SIZE in the environment,
                                   cyclr.distributed.init_distributed('nccl')), and in 2 when there are >= 2 GPUs:
                                   finite losses, one step per batch of the rank's share, identical weights on all ranks.
  time simple_cnn/resnet18 bar=..  Learner epoch (learn.fit(1)) over a hand-written epoch (train + validation loss and
                                   accuracy), same GPU, torch.cuda.synchronize() at the timing points, contestants
                                   interleaved (order alternating) after a warm-up: median ratio and min-max of the
                                   ratios per repetition, and the median epoch times. PASS when the median ratio
                                   <= --max-ratio. simple_cnn on digits (bs 64, CPU batches moved per step);
                                   resnet18(weights=None, num_classes=10) on generated 3x64x64 images, batch 256,
                                   batches already on the GPU.
  peak memory lr_find              torch.cuda.max_memory_allocated of cyclr.lr_find.lr_find vs plain training steps of
                                   the same resnet18 + Adam at batch 256 (both after reset_peak_memory_stats), in MiB
                                   and as a ratio; PASS when the ratio <= --max-mem-ratio.
  cpu: time simple_cnn bar=..      the CPU section (always runs, a few seconds): the same timing on the CPU.
"""
import os
os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')  # before CUDA starts: needed by the exact-resume check

import argparse
import contextlib
import io
import math
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CE = nn.CrossEntropyLoss()
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learner import hand_epoch  # noqa: E402  (the one hand-written reference loop of the benches)
RESULTS = []   # (name, result, details)
OPTS = None    # argparse namespace
DEV = None     # torch.device of the CUDA checks; None: no CUDA (they are SKIPPED)


class Skip(Exception):
    "Raised by a check that cannot run here; its text says why."


def cyclr_api():
    "The public API used here, imported when a check first needs it."
    from cyclr.callback import SaveModelCallback
    from cyclr.data import DataLoaders, digits
    from cyclr.learner import Learner
    from cyclr.lr_find import lr_find
    from cyclr.metrics import accuracy
    from cyclr.models import simple_cnn
    return dict(DataLoaders=DataLoaders, digits=digits, Learner=Learner, SaveModelCallback=SaveModelCallback,
                lr_find=lr_find, accuracy=accuracy, simple_cnn=simple_cnn)


def run_check(name, fn, *args):
    "Run one check; PASS with its details, SKIPPED on Skip, FAIL with the exception text on anything else."
    t0 = time.perf_counter()
    try:
        details, result = fn(*args), 'PASS'
    except Skip as e: details, result = str(e), 'SKIPPED'
    except Exception as e:
        result = 'FAIL'
        details = f'{type(e).__name__}: {e}'.strip()
        if OPTS is not None and OPTS.verbose: traceback.print_exc()
    finally:
        if torch.cuda.is_available(): torch.cuda.empty_cache()
    RESULTS.append((name, result, f'{details} [{time.perf_counter() - t0:.1f}s]'))
    print(f'{name:<30} {result:<8} {RESULTS[-1][2]}', flush=True)


def need_cuda(what='no CUDA'):
    if DEV is None: raise Skip(what)
    return DEV


def need_real_cuda(what='no CUDA'):
    "For the checks that only mean something on a GPU (fp16, peak memory): SKIPPED in the CPU dry run too."
    if DEV is None or DEV.type != 'cuda': raise Skip(what)
    return DEV


def sync():
    if DEV is not None and DEV.type == 'cuda': torch.cuda.synchronize(DEV)


def check(cond, msg):
    if not cond: raise AssertionError(msg)


def same(a, b, path='state'):
    "Assert nested state (dicts, lists, tensors, numbers) `a` equals `b` bit for bit."
    if isinstance(a, torch.Tensor):
        check(isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and a.device == b.device,
              f'{path}: type/dtype/shape/device differ')
        check(torch.equal(a, b), f'{path}: values differ')
    elif isinstance(a, dict):
        check(isinstance(b, dict) and a.keys() == b.keys(), f'{path}: keys differ')
        for k in a: same(a[k], b[k], f'{path}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        check(isinstance(b, (list, tuple)) and len(a) == len(b), f'{path}: lengths differ')
        for i, (x, y) in enumerate(zip(a, b)): same(x, y, f'{path}[{i}]')
    else: check(a is b or a == b or (a != a and b != b), f'{path}: {a!r} != {b!r}')


def clone_state(sd):
    "A deep copy of a state_dict (tensors cloned on their own device)."
    if isinstance(sd, torch.Tensor): return sd.detach().clone()
    if isinstance(sd, dict): return {k: clone_state(v) for k, v in sd.items()}
    if isinstance(sd, (list, tuple)): return type(sd)(clone_state(v) for v in sd)
    return sd


class Recording:
    "opt_func that remembers the optimizers it builds (Adam), so that their state can be compared."
    def __init__(self, cls=torch.optim.Adam): self.cls, self.made = cls, []
    def __call__(self, params, **kw):
        self.made.append(self.cls(params, **kw)); return self.made[-1]


@contextlib.contextmanager
def count_steps(model):
    "Counts real optimizer steps (a global step post-hook: GradScaler's skipped steps never call it) and training forwards."
    c = dict(steps=0, batches=0)
    def on_step(opt, args, kwargs): c['steps'] += 1
    def on_fwd(mod, inp):
        if mod.training: c['batches'] += 1
    h1 = register_optimizer_step_post_hook(on_step)
    h2 = model.register_forward_pre_hook(on_fwd)
    try: yield c
    finally: h1.remove(); h2.remove()


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()): yield


# ---------------------------------------------------------------- pytest subset

def check_pytest():
    test = ROOT / 'tests' / 'test_cuda.py'
    if not test.exists(): raise AssertionError(f'{test} is missing')
    cmd = [sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider', str(test.relative_to(ROOT))]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [l for l in p.stdout.strip().splitlines() if l.strip()]
    summary = lines[-1].strip('= ') if lines else f'no output (rc {p.returncode}): {p.stderr[-300:]}'
    counts = {k: int(n) for n, k in re.findall(r'(\d+) (passed|failed|skipped|error|errors|xfailed|xpassed)', summary)}
    if p.returncode not in (0, 5) or counts.get('failed') or counts.get('error') or counts.get('errors'):
        tail = ' | '.join(l for l in lines if l.startswith(('FAILED', 'ERROR', 'E ')))[:600]
        raise AssertionError(f'rc {p.returncode}: {summary}; {tail}')
    if not torch.cuda.is_available(): raise Skip(f'no CUDA (pytest: {summary})')
    check(counts.get('passed', 0) > 0, f'nothing passed: {summary}')
    return f'pytest: {summary}'


# ---------------------------------------------------------------- mixed precision and skipped steps

def check_amp(kind):
    dev = need_real_cuda('no CUDA' if DEV is None else 'fp16 needs CUDA') if kind == 'fp16' else need_cuda()
    api = cyclr_api()
    model = api['simple_cnn'](seed=0)
    learn = api['Learner'](api['digits'](bs=64), model, CE, metrics=api['accuracy'], mixed_precision=kind, device=dev,
                           progress=False)
    def provoke():
        "fp16: a GradScaler with a huge initial scale, so that the first ~20 steps overflow and are skipped."
        if kind != 'fp16': return ''
        if not isinstance(getattr(learn, 'scaler', None), torch.amp.GradScaler):
            raise AssertionError('the Learner exposes no GradScaler (`learn.scaler`) to give init_scale=2**40')
        learn.scaler = torch.amp.GradScaler('cuda', init_scale=2. ** 40)
    provoke()
    n0 = len(learn.recorder.lrs)
    with count_steps(learn.model) as fit_c: learn.fit_one_cycle(2, lr_max=1e-2)
    rec_steps = len(learn.recorder.lrs) - n0
    check(fit_c['steps'] > 0, f'fit: no optimizer step in {fit_c["batches"]} batches')
    check(rec_steps == fit_c['steps'], f'fit: Recorder logged {rec_steps} steps, the optimizer made {fit_c["steps"]}')
    train_loss = learn.recorder.values[-1][0]
    check(math.isfinite(train_loss), f'fit: train loss {train_loss}')
    if kind == 'fp16': check(fit_c['batches'] > fit_c['steps'], f'fit: no step was skipped ({fit_c["batches"]} batches)')
    provoke()
    with count_steps(learn.model) as lf_c: res = learn.lr_find(num_it=30 if OPTS.quick else 60, show_plot=False)
    check(len(res.lrs) == lf_c['steps'], f'lr_find: {len(res.lrs)} recorded steps, the optimizer made {lf_c["steps"]}'
                                         f' ({lf_c["batches"]} batches, stop_reason {res.stop_reason!r})')
    check(len(res.losses) == len(res.lrs), f'lr_find: {len(res.losses)} losses for {len(res.lrs)} lrs')
    if kind == 'fp16': check(lf_c['batches'] > lf_c['steps'], f'lr_find: no step was skipped ({lf_c["batches"]} batches)')
    return (f'fit: {fit_c["batches"]} batches, {fit_c["steps"]} steps = Recorder, loss {train_loss:.3f}; '
            f'lr_find: {lf_c["batches"]} batches, {lf_c["steps"]} steps = len(lrs), {res.stop_reason}')


# ---------------------------------------------------------------- lr_find restores everything

def check_lr_find_restore():
    dev = need_cuda()
    api = cyclr_api()
    model = nn.Sequential(api['simple_cnn'](seed=0), nn.Dropout(0.2))  # Dropout: the test draws from the (CUDA) RNG
    opt_func = Recording()
    dls = api['digits'](bs=64)
    learn = api['Learner'](dls, model, CE, opt_func=opt_func, device=dev, progress=False)
    learn.fit(1, 1e-3)  # optimizer state and BatchNorm statistics that are not the initial ones
    opt = opt_func.made[-1]
    gen = dls.train.generator
    before = dict(model=clone_state(learn.model.state_dict()), opt=clone_state(opt.state_dict()),
                  cpu_rng=torch.get_rng_state(), gen=gen.get_state() if gen is not None else None,
                  modes=[m.training for m in learn.model.modules()])
    if dev.type == 'cuda': before['cuda_rng'] = [s.clone() for s in torch.cuda.get_rng_state_all()]
    with count_steps(learn.model) as c: res = learn.lr_find(num_it=40, show_plot=False)
    check(c['steps'] > 0, 'lr_find made no optimizer step')
    check(opt_func.made[-1] is opt, 'lr_find replaced the optimizer')
    after = dict(model=learn.model.state_dict(), opt=opt.state_dict(), cpu_rng=torch.get_rng_state(),
                 gen=gen.get_state() if gen is not None else None, modes=[m.training for m in learn.model.modules()])
    if dev.type == 'cuda': after['cuda_rng'] = torch.cuda.get_rng_state_all()
    same(before, after, 'after lr_find')
    dev_ok = all(p.device.type == dev.type for p in learn.model.parameters())
    check(dev_ok, 'parameters left the device')
    n = sum(t.numel() for t in before['model'].values())
    return (f'{c["steps"]} steps ({res.stop_reason}); {len(before["model"])} tensors ({n} values), Adam state, '
            f'CPU{"/CUDA" if dev.type == "cuda" else ""} RNG, loader generator: bit-identical')


# ---------------------------------------------------------------- exact resume

class MeanPool(nn.Module):
    "Global average pooling as a mean: AdaptiveAvgPool2d's CUDA backward has no deterministic implementation."
    def forward(self, x): return x.mean((2, 3), keepdim=True)


def resume_model(api, seed):
    body = api['simple_cnn'](seed=seed)
    kids = [MeanPool() if isinstance(m, nn.AdaptiveAvgPool2d) else m for m in body.children()]
    return nn.Sequential(*kids[:-1], nn.Dropout(0.1), kids[-1])  # Dropout: the resumed RNG must be the saved one


def one_hot_ce(preds, targets):
    "Cross-entropy without NLLLoss, whose CUDA kernel refuses torch.use_deterministic_algorithms(True)."
    logp = preds.float().log_softmax(-1)
    return -(logp * nn.functional.one_hot(targets, logp.shape[-1]).to(logp.dtype)).sum(-1).mean()


def check_resume():
    dev = need_cuda()
    api = cyclr_api()
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            a = api['Learner'](api['digits'](bs=64), resume_model(api, 0), one_hot_ce, metrics=api['accuracy'], device=dev,
                               progress=False, path=tmp)
            cb = api['SaveModelCallback'](every_epoch=True)
            a.fit_one_cycle(2, lr_max=1e-2, cbs=[cb])
            ckpts = sorted(Path(tmp).rglob('*.pth'), key=lambda p: p.stat().st_mtime_ns)
            check(len(ckpts) == 2, f'expected 2 checkpoints, found {[p.name for p in ckpts]}')
            first = Path(cb.saved[0]) if getattr(cb, 'saved', None) else ckpts[0]  # the one saved after epoch 1
            torch.manual_seed(1234)  # another global RNG state: resume must restore the saved one
            b = api['Learner'](api['digits'](bs=64), resume_model(api, 1), one_hot_ce, metrics=api['accuracy'], device=dev,
                               progress=False, path=tmp)
            b.fit_one_cycle(2, lr_max=1e-2, resume_from=str(first))
            sa, sb = a.model.state_dict(), b.model.state_dict()
            diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
            check(not diff, f'{len(diff)} of {len(sa)} tensors differ after resuming from {first.name}, e.g. {diff[:3]}')
            la, lb = a.recorder.values[-1], b.recorder.values[-1]
            check(la == lb, f'last epoch train/valid loss, accuracy differ: {la} vs {lb}')
            return (f'resumed from {first.name}: all {len(sa)} tensors torch.equal, last epoch losses equal '
                    f'({la[0]:.6f}/{la[1]:.6f})')
    finally:
        torch.use_deterministic_algorithms(was)


# ---------------------------------------------------------------- DDP

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, backend, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    api = cyclr_api()
    from cyclr.distributed import destroy_distributed, init_distributed
    r, w = init_distributed(backend, timeout_s=60)
    assert (r, w) == (rank, world), (r, w)
    try:
        dev = torch.device('cuda', rank) if backend == 'nccl' else torch.device('cpu')
        learn = api['Learner'](api['digits'](bs=32), api['simple_cnn'](seed=0), CE, metrics=api['accuracy'],
                               device=dev, progress=False)
        with count_steps(learn.model) as c: learn.fit_one_cycle(1, lr_max=1e-2)
        # parameters only: BatchNorm's running statistics are each rank's own after the last forward
        torch.save(dict(state={k: v.detach().cpu() for k, v in learn.model.named_parameters()}, steps=c['steps'],
                        batches=c['batches'], values=learn.recorder.values[-1]), f'{out}/rank{rank}.pt')
    finally: destroy_distributed()


def check_ddp(world):
    dev = need_cuda()
    backend = 'nccl' if dev.type == 'cuda' else 'gloo'
    if backend == 'nccl' and world > torch.cuda.device_count():
        raise Skip(f'{torch.cuda.device_count()} GPU(s), {world} needed')
    if backend == 'nccl' and not torch.distributed.is_nccl_available(): raise AssertionError('NCCL is not available')
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.start_processes(_ddp_worker, args=(world, free_port(), backend, tmp), nprocs=world, join=False,
                                 start_method='spawn')
        deadline = time.monotonic() + 150
        try:
            while not ctx.join(timeout=0.5):
                if time.monotonic() > deadline: raise AssertionError(f'the {world} rank(s) did not finish in 150 s (a hang?)')
        finally:
            for p in ctx.processes:
                if p.is_alive(): p.kill()
        res = [torch.load(f'{tmp}/rank{r}.pt', weights_only=False) for r in range(world)]
    for r, x in enumerate(res):
        check(x['steps'] == x['batches'] > 0, f'rank {r}: {x["steps"]} steps for {x["batches"]} batches')
        check(all(math.isfinite(v) for v in x['values'][:2]), f'rank {r}: losses {x["values"]}')
    for r in range(1, world): same(res[0]['state'], res[r]['state'], f'rank {r} vs rank 0 parameters')
    v = res[0]['values']
    return (f'{backend}, {world} rank(s): {res[0]["steps"]} steps/rank, train/valid loss {v[0]:.3f}/{v[1]:.3f}'
            + (', parameters identical on all ranks' if world > 1 else ''))


# ---------------------------------------------------------------- timing: Learner vs a hand-written loop

def batches_loader(x, y, bs):
    "A DataLoader whose items are whole batches already on x's device (no collation work per step)."
    n = len(x) // bs
    return DataLoader(TensorDataset(x[:n * bs].view(n, bs, *x.shape[1:]), y[:n * bs].view(n, bs)), batch_size=None)


def timing(device, make_model, make_dls, bar, reps, max_ratio, lr=1e-3):
    "Median (min-max) of the per-repetition ratio Learner epoch / hand epoch; both synchronised, interleaved."
    api = cyclr_api()
    dls_h, dls_l = make_dls(), make_dls()
    m_h, m_l = make_model().to(device), make_model().to(device)
    opt_h = torch.optim.Adam(m_h.parameters(), lr=lr)
    learn = api['Learner'](dls_l, m_l, CE, metrics=api['accuracy'], device=device, progress=bar)
    def run_hand(): hand_epoch(m_h, opt_h, dls_h, CE, device)
    def run_learn():
        with quiet(): learn.fit(1, lr)
    # GPU: wall time between synchronisations. CPU: this process's CPU time on one thread, steady when other
    # processes load the machine (wall time there measures the neighbours as much as the loop)
    clock = time.perf_counter if device.type == 'cuda' else time.process_time
    def timed(fn):
        if device.type == 'cuda': torch.cuda.synchronize(device)
        t0 = clock()
        fn()
        if device.type == 'cuda': torch.cuda.synchronize(device)
        return clock() - t0
    threads = torch.get_num_threads()
    if device.type == 'cpu': torch.set_num_threads(1)
    try:
        run_hand(); run_learn()  # warm-up: cuDNN autotuning, allocator, first-fit set-up
        th, tl = [], []
        for i in range(reps):
            if i % 2: tl.append(timed(run_learn)); th.append(timed(run_hand))
            else: th.append(timed(run_hand)); tl.append(timed(run_learn))
    finally: torch.set_num_threads(threads)
    ratios = [b / a for a, b in zip(th, tl)]
    med = statistics.median(ratios)
    msg = (f'ratio {med:.3f} ({min(ratios):.3f}-{max(ratios):.3f}), Learner {statistics.median(tl) * 1e3:.1f} ms '
           f'vs hand {statistics.median(th) * 1e3:.1f} ms per epoch ({"wall" if device.type == "cuda" else "CPU time, 1 thread"}), '
           f'{reps} reps')
    check(med <= max_ratio, f'{msg}: median ratio > {max_ratio}')
    return msg


def cnn_case(device):
    api = cyclr_api()
    return (lambda: api['simple_cnn'](seed=0)), (lambda: api['digits'](bs=64))


def resnet_case(device, bs, n_train, n_valid, size):
    from torchvision.models import resnet18
    api = cyclr_api()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_valid, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 10, (n_train + n_valid,), generator=g).to(device)
    def make_dls():
        return api['DataLoaders'](batches_loader(x[:n_train], y[:n_train], bs), batches_loader(x[n_train:], y[n_train:], bs))
    def make_model():
        torch.manual_seed(0)
        return resnet18(weights=None, num_classes=10)
    return make_model, make_dls


def resnet_sizes():
    "batch, train items, valid items, image size: the issue's sizes on a GPU, small ones in the CPU dry run."
    if DEV.type == 'cuda': return (256, 256 * (8 if OPTS.quick else 16), 256 * 2, 64)
    return (16, 32, 16, 32)


def check_time(which, bar):
    dev = need_cuda()
    reps = 3 if OPTS.quick else OPTS.reps
    if which == 'simple_cnn': make_model, make_dls = cnn_case(dev)
    else: make_model, make_dls = resnet_case(dev, *resnet_sizes())
    return timing(dev, make_model, make_dls, bar, reps, OPTS.max_ratio)


def check_time_cpu(bar):
    make_model, make_dls = cnn_case(torch.device('cpu'))
    return timing(torch.device('cpu'), make_model, make_dls, bar, OPTS.cpu_reps, OPTS.max_ratio_cpu)


# ---------------------------------------------------------------- peak memory

def check_memory():
    dev = need_real_cuda()
    from torchvision.models import resnet18
    api = cyclr_api()
    bs, n_train, _, size = resnet_sizes()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bs * 6, 3, size, size, generator=g).to(dev)
    y = torch.randint(0, 10, (bs * 6,), generator=g).to(dev)
    dl = batches_loader(x, y, bs)
    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=10).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    def step(xb, yb):
        loss = CE(model(xb), yb); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    model.train()
    step(*next(iter(dl)))  # Adam's state exists from here on, in both measurements
    torch.cuda.synchronize(dev); torch.cuda.empty_cache()
    resident = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    for xb, yb in dl: step(xb, yb)
    torch.cuda.synchronize(dev)
    peak_step = torch.cuda.max_memory_allocated(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    res = api['lr_find'](model, dl, CE, opt, num_it=20 if OPTS.quick else 50, show_plot=False)
    torch.cuda.synchronize(dev)
    peak_lf = torch.cuda.max_memory_allocated(dev)
    mib = 2 ** 20
    ratio = peak_lf / peak_step
    msg = (f'lr_find {peak_lf / mib:.0f} MiB vs train step {peak_step / mib:.0f} MiB: ratio {ratio:.2f} '
           f'(+{(peak_lf - peak_step) / mib:.0f} MiB; weights+Adam+data {resident / mib:.0f} MiB; '
           f'{len(res.lrs)} steps, {res.stop_reason})')
    check(ratio <= OPTS.max_mem_ratio, f'{msg}: ratio > {OPTS.max_mem_ratio}')
    return msg


# ---------------------------------------------------------------- main

def main(argv=None):
    global OPTS, DEV
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='3 timing repetitions and shorter range tests')
    ap.add_argument('--reps', type=int, default=7, help='timing repetitions on the GPU (>= 5 without --quick)')
    ap.add_argument('--cpu-reps', type=int, default=3, help='timing repetitions of the CPU section')
    ap.add_argument('--max-ratio', type=float, default=1.15, help='PASS bound of Learner/hand epoch time on the GPU')
    ap.add_argument('--max-ratio-cpu', type=float, default=1.30, help='PASS bound of Learner/hand epoch time on the CPU')
    ap.add_argument('--max-mem-ratio', type=float, default=1.5, help='PASS bound of lr_find peak / train step peak memory')
    ap.add_argument('--device', default=None, help="device of the CUDA checks (default: cuda when available); "
                                                   "'cpu' is a developer dry run of their logic")
    ap.add_argument('--only', default=None, help='run only the checks whose name contains this text')
    ap.add_argument('--verbose', action='store_true', help='print tracebacks of failures')
    OPTS = ap.parse_args(argv)
    if not OPTS.quick and OPTS.reps < 5: ap.error('--reps must be >= 5 (or use --quick)')
    if OPTS.device is not None: DEV = torch.device(OPTS.device)
    elif torch.cuda.is_available(): DEV = torch.device('cuda', torch.cuda.current_device())
    if DEV is not None and DEV.type == 'cuda' and not torch.cuda.is_available(): ap.error('--device cuda: no CUDA here')
    gpu = torch.cuda.get_device_name(DEV) if DEV is not None and DEV.type == 'cuda' else 'none'
    print(f'cyclr gpu_check | torch {torch.__version__} | python {platform.python_version()} | GPU: {gpu} '
          f'({torch.cuda.device_count()} visible) | CUDA checks on: {DEV or "- (SKIPPED)"} | '
          f'{"quick" if OPTS.quick else "full"} | CUBLAS_WORKSPACE_CONFIG={os.environ.get("CUBLAS_WORKSPACE_CONFIG")}')
    print(f'{"check":<30} {"result":<8} details')
    print('-' * 110, flush=True)
    t0 = time.perf_counter()
    checks = [('pytest tests/test_cuda.py', check_pytest),
              ('amp fp16 + GradScaler', check_amp, 'fp16'),
              ('amp bf16', check_amp, 'bf16'),
              ('lr_find restore (CUDA)', check_lr_find_restore),
              ('exact resume (CUDA)', check_resume),
              ('ddp nccl x1', check_ddp, 1),
              ('ddp nccl x2', check_ddp, 2),
              ('time simple_cnn bar=off', check_time, 'simple_cnn', False),
              ('time simple_cnn bar=on', check_time, 'simple_cnn', True),
              ('time resnet18 bar=off', check_time, 'resnet18', False),
              ('time resnet18 bar=on', check_time, 'resnet18', True),
              ('peak memory lr_find', check_memory),
              ('cpu: time simple_cnn bar=off', check_time_cpu, False),
              ('cpu: time simple_cnn bar=on', check_time_cpu, True)]
    for name, fn, *args in checks:
        if OPTS.only and OPTS.only not in name: continue
        run_check(name, fn, *args)
    print('-' * 110)
    n = {r: sum(x[1] == r for x in RESULTS) for r in ('PASS', 'FAIL', 'SKIPPED')}
    print(f'{n["PASS"]} PASS, {n["FAIL"]} FAIL, {n["SKIPPED"]} SKIPPED in {time.perf_counter() - t0:.0f} s', flush=True)
    return 1 if n['FAIL'] else 0


if __name__ == '__main__':
    sys.exit(main())
