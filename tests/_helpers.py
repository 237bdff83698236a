"Helpers shared by the test files."
import numpy as np
import torch
from torch import nn

def assert_same(a, b, path='state'):
    "Assert that nested state (dicts, lists, tensors, arrays, numbers) `a` equals `b` bit for bit; `path` names the first difference."
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and a.device == b.device, path
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray): assert np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a: assert_same(a[k], b[k], f'{path}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)): assert_same(x, y, f'{path}[{i}]')
    else: assert a is b or a == b or (a != a and b != b), path   # NaN equals NaN here


def cnn(seed=0, dropout=0.):
    "A tiny seeded CNN for 8x8 digits: BatchNorm (buffers), optional dropout (RNG), 5 parameter-holding children (3 groups by split_by_children(3))."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(16, 10))
