"Helpers shared by the test files."
import numpy as np
import torch

def assert_same(a, b, path='state'):
    "Assert that nested state (dicts, lists, tensors, arrays, numbers) `a` equals `b` bit for bit; `path` names the first difference."
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray): assert np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a: assert_same(a[k], b[k], f'{path}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)): assert_same(x, y, f'{path}[{i}]')
    else: assert a is b or a == b or (a != a and b != b), path   # NaN equals NaN here
