"Tests for cyclr.metrics: accuracy, error_rate, top_k_accuracy, metric_name."
import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from cyclr.metrics import accuracy, error_rate, metric_name, top_k_accuracy

torch.set_num_threads(1)

# Four items, three classes. Row arg-maxes: 1, 0, 2, 2; targets 1, 0, 1, 2 -> items 0, 1, 3 right.
PREDS = torch.tensor([[0.1, 2.0, -1.0],
                      [3.0, 0.0, 0.0],
                      [0.0, 0.5, 0.9],
                      [0.2, 0.1, 0.3]])
TARGETS = torch.tensor([1, 0, 1, 2])


def test_accuracy_hand_example():
    acc = accuracy(PREDS, TARGETS)
    assert isinstance(acc, torch.Tensor) and acc.ndim == 0 and acc.dtype == torch.float32
    assert acc.item() == 3 / 4


def test_error_rate_hand_example():
    err = error_rate(PREDS, TARGETS)
    assert err.ndim == 0 and err.item() == 1 / 4


def test_accuracy_extremes():
    assert accuracy(PREDS, PREDS.argmax(1)).item() == 1.
    # every item's target is its lowest-scoring class
    assert accuracy(PREDS, torch.tensor([2, 1, 0, 1])).item() == 0.
    assert error_rate(PREDS, torch.tensor([2, 1, 0, 1])).item() == 1.


def test_accuracy_probabilities_same_as_logits():
    # softmax is monotone per row, so the arg-max and the accuracy do not change
    assert accuracy(PREDS.softmax(1), TARGETS).item() == 3 / 4


def test_accuracy_class_indices():
    assert accuracy(torch.tensor([1, 0, 2, 2]), TARGETS).item() == 3 / 4
    assert accuracy(torch.tensor([[1, 0], [2, 2]]), TARGETS.view(2, 2)).item() == 3 / 4


def test_accuracy_ties_take_first_class():
    # torch.argmax documents that the first maximal index wins: [1, 1, 0] -> class 0
    p = torch.tensor([[1., 1., 0.], [0., 2., 2.]])
    assert accuracy(p, torch.tensor([0, 1])).item() == 1.
    assert accuracy(p, torch.tensor([1, 2])).item() == 0.


def test_accuracy_segmentation_shapes():
    # (N=1, C=2, H=2, W=2): class 1 wins where channel 1 is larger, i.e. at (0,1) and (1,1)
    p = torch.tensor([[[[1., 0.], [1., 0.]],
                       [[0., 1.], [0., 1.]]]])
    t = torch.tensor([[[0, 1], [1, 1]]])   # pixel (1,0) is wrong: 3 of 4
    assert accuracy(p, t).item() == 3 / 4


def test_accuracy_low_precision_preds():
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        assert accuracy(PREDS.to(dt), TARGETS).item() == 3 / 4


def test_accuracy_single_item_and_int32_targets():
    assert accuracy(PREDS[:1], TARGETS[:1].int()).item() == 1.


def test_accuracy_no_grad_needed():
    p = PREDS.clone().requires_grad_()
    assert accuracy(p, TARGETS).item() == 3 / 4  # argmax is fine on a tensor that needs grad


def test_top_k_hand_example():
    # top-2 classes per row: {1,0}, {0, 1 or 2 (tie)}, {2,1}, {2,0}; targets 1, 0, 1, 2 -> all four in
    top2 = top_k_accuracy(2)
    assert top2.__name__ == 'top_2_accuracy'
    v = top2(PREDS, TARGETS)
    assert v.ndim == 0 and v.dtype == torch.float32 and v.item() == 1.
    # with k=1 the third item (target 1, scores 0.0 0.5 0.9) misses again
    assert top_k_accuracy(1)(PREDS, TARGETS).item() == 3 / 4
    assert top_k_accuracy(3)(PREDS, TARGETS).item() == 1.  # k = C: everything is in


def test_top_k_default_is_5():
    assert top_k_accuracy().__name__ == 'top_5_accuracy'
    p = torch.tensor([[6., 5., 4., 3., 2., 1.]])  # class c is the (c+1)-th highest
    assert top_k_accuracy()(p, torch.tensor([4])).item() == 1.
    assert top_k_accuracy()(p, torch.tensor([5])).item() == 0.


def test_top_k_worst_class_out():
    p = torch.tensor([[4., 3., 2., 1.]])
    assert top_k_accuracy(3)(p, torch.tensor([3])).item() == 0.
    assert top_k_accuracy(4)(p, torch.tensor([3])).item() == 1.


def test_top_k_segmentation_shapes():
    p = torch.tensor([[[[3.]], [[2.]], [[1.]]]])        # (N=1, C=3, 1, 1): class order 0, 1, 2
    assert top_k_accuracy(2)(p, torch.tensor([[[1]]])).item() == 1.
    assert top_k_accuracy(2)(p, torch.tensor([[[2]]])).item() == 0.


def _rank_reference(p, t):
    "Number of classes scoring strictly more than the target, per row (numpy, no ties)."
    return (p > p[np.arange(len(t)), t][:, None]).sum(1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 8), st.integers(0, 2**31 - 1), st.data())
def test_top_k_matches_rank_reference(n, c, seed, data):
    rng = np.random.default_rng(seed)
    p = rng.permutation(n * c).reshape(n, c).astype(np.float32)   # distinct scores: no ties
    t = rng.integers(0, c, n)
    k = data.draw(st.integers(1, c))
    ref = (_rank_reference(p, t) < k).mean()
    got = top_k_accuracy(k)(torch.from_numpy(p), torch.from_numpy(t))
    assert got.item() == pytest.approx(ref, abs=1e-7)
    # top-1 is the accuracy when nothing ties; the error rate is its complement
    assert top_k_accuracy(1)(torch.from_numpy(p), torch.from_numpy(t)).item() == pytest.approx(
        (_rank_reference(p, t) == 0).mean(), abs=1e-7)
    acc = accuracy(torch.from_numpy(p), torch.from_numpy(t)).item()
    assert acc == pytest.approx((p.argmax(1) == t).mean(), abs=1e-7)
    assert error_rate(torch.from_numpy(p), torch.from_numpy(t)).item() == pytest.approx(1 - acc, abs=1e-7)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(2, 30), st.just(4)), elements=st.floats(-5, 5, width=32)),
       st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_batch_means_combine_exactly(p, bs, seed):
    "A metric is a mean over items: weighting batches by their size gives the whole-set value."
    t = torch.from_numpy(np.random.default_rng(seed).integers(0, 4, len(p)))
    p = torch.from_numpy(p)
    whole = accuracy(p, t).item()
    parts = [(accuracy(p[i:i + bs], t[i:i + bs]).item(), len(t[i:i + bs])) for i in range(0, len(t), bs)]
    assert sum(v * w for v, w in parts) / len(t) == pytest.approx(whole, abs=1e-6)


@pytest.mark.parametrize('metric', [accuracy, error_rate, top_k_accuracy(2)])
@pytest.mark.parametrize('preds, targets, exc, name', [
    ([[0.1, 0.9]], torch.tensor([1]), TypeError, 'preds'),
    (PREDS, [1, 0, 1, 2], TypeError, 'targets'),
    (PREDS, TARGETS.float(), TypeError, 'targets'),
    (PREDS, TARGETS.bool(), TypeError, 'targets'),
    (PREDS, TARGETS[:3], ValueError, 'preds'),                  # N differs
    (PREDS[:, None], TARGETS, ValueError, 'preds'),             # 2 dims more than targets
    (PREDS.view(4, 3, 1), TARGETS.view(2, 2), ValueError, 'preds'),  # (N, C, 1) against (2, 2)
    (PREDS[:0], TARGETS[:0], ValueError, 'targets'),                # empty
])
def test_bad_inputs(metric, preds, targets, exc, name):
    with pytest.raises(exc, match=f'`{name}`'):
        metric(preds, targets)


def test_float_preds_same_shape_as_targets_refused():
    # float scores without a class dimension would be compared to labels as numbers: refuse them
    with pytest.raises(TypeError, match='`preds`'):
        accuracy(torch.tensor([1., 0., 2., 2.]), TARGETS)
    with pytest.raises(ValueError, match='`preds`'):
        accuracy(torch.tensor([1, 0, 2]), TARGETS)


def test_top_k_needs_scores():
    with pytest.raises(ValueError, match='`preds`'):
        top_k_accuracy(1)(torch.tensor([1, 0, 2, 2]), TARGETS)


def test_top_k_k_larger_than_classes():
    with pytest.raises(ValueError, match=r'`k` must be an integer in \[1, 3\] \(the number of classes in `preds`\), got 4'):
        top_k_accuracy(4)(PREDS, TARGETS)


@pytest.mark.parametrize('k, exc', [(0, ValueError), (-1, ValueError), (2.0, TypeError), ('2', TypeError),
                                    (True, TypeError)])
def test_top_k_bad_k(k, exc):
    with pytest.raises(exc, match='`k`'):
        top_k_accuracy(k)


def test_metric_names():
    assert accuracy.__name__ == 'accuracy' and error_rate.__name__ == 'error_rate'
    assert metric_name(accuracy) == 'accuracy' and metric_name(top_k_accuracy(3)) == 'top_3_accuracy'
    assert metric_name(functools.partial(functools.partial(accuracy))) == 'accuracy'

    class F1:
        def __call__(self, preds, targets): return torch.tensor(0.)
    assert metric_name(F1()) == 'F1'
    assert metric_name(lambda p, t: p) == '<lambda>'


def test_metrics_keep_device_and_leave_inputs():
    p, t = PREDS.clone(), TARGETS.clone()
    for m in (accuracy, error_rate, top_k_accuracy(2)):
        assert m(p, t).device == p.device
    assert torch.equal(p, PREDS) and torch.equal(t, TARGETS)
