"Overhead of `lr_find(num_it=100)` over 100 hand-written training steps (same model, data, optimizer); median of 5."
import statistics, time

import torch
from torch import nn

from cyclr.data import digits
from cyclr.lr_find import lr_find

torch.set_num_threads(1)

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

def hand_written(model, dl, loss_func, opt, n=100):
    "The loop a user would write: forward, loss, backward, step, zero_grad; looping over `dl`."
    model.train()
    done = 0
    while done < n:
        for xb, yb in dl:
            loss_func(model(xb), yb).backward()
            opt.step(); opt.zero_grad()
            done += 1
            if done == n: break

def main(reps=5):
    dls, loss_func = digits(bs=64), nn.CrossEntropyLoss()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-7, momentum=0.9)
    hand_written(model, dls.train, loss_func, opt, 10)  # warm up
    t_hand, t_find = [], []
    for _ in range(reps):
        t0 = time.perf_counter(); hand_written(model, dls.train, loss_func, opt); t_hand.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = lr_find(model, dls.train, loss_func, opt, num_it=100, stop_div=False, show_plot=False)
        t_find.append(time.perf_counter() - t0)
        assert len(res.lrs) == 100
    h, f = statistics.median(t_hand), statistics.median(t_find)
    print(f"100 hand-written steps: {h * 1e3:.1f} ms   lr_find(num_it=100): {f * 1e3:.1f} ms   "
          f"overhead: {(f / h - 1) * 100:+.1f}% (median of {reps}, {torch.get_num_threads()} thread)")

if __name__ == '__main__': main()
