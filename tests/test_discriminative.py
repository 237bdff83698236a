"""Edge cases, bad input, properties and optimizer-level checks for cyclr.discriminative.

References are independent of the code under test: `model.parameters()` / `named_parameters()` for
partitions, closed-form LR spreads, and weight snapshots compared after real torch optimizer steps."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.nn import functional as F

from cyclr.discriminative import (default_splitter, split_by_children, resnet_splitter, split_params, small_resnet,
                                  describe_groups, spread_lrs, group_param_dicts, is_bn, is_norm, norm_params,
                                  freeze_to, freeze, unfreeze, set_bn_eval)

torch.set_num_threads(1)  # shared 2-core machine; every model here is tiny


def tiny_cnn(n_out=3):
    "Children with parameters: 0 conv, 1 bn, 3 conv, 4 bn, 8 linear."
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_out))

# which group (of split_by_children(3)) each child of tiny_cnn lands in: 5 children -> sizes 2, 2, 1
CNN_GROUP_OF_CHILD = {'0': 0, '1': 0, '3': 1, '4': 1, '8': 2}
CNN_BN = {'1.weight', '1.bias', '4.weight', '4.bias'}


def cnn_groups(seed=0):
    torch.manual_seed(seed)
    model = tiny_cnn()
    return model, split_params(model, split_by_children(3))


def assert_partition(model, groups):
    "Every parameter of `model` (by `model.parameters()`) in exactly one non-empty group."
    flat = [id(p) for g in groups for p in g]
    assert all(len(g) > 0 for g in groups)
    assert len(flat) == len(set(flat))
    assert set(flat) == {id(p) for p in model.parameters()}


def names_of(model, groups):
    name = {id(p): n for n, p in model.named_parameters()}
    return [[name[id(p)] for p in g] for g in groups]


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def train_steps(model, opt, steps=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


OPTIMIZERS = {
    'sgd_momentum_wd': lambda groups: torch.optim.SGD(group_param_dicts(groups, slice(1e-2, 1e-1)),
                                                      momentum=0.9, weight_decay=0.1),
    'adamw_wd': lambda groups: torch.optim.AdamW(group_param_dicts(groups, slice(1e-3, 1e-2)), weight_decay=0.1),
}

# ---------------------------------------------------------------------------------------------- splitters

def test_default_splitter_one_group():
    model = tiny_cnn()
    groups = split_params(model)
    assert len(groups) == 1 and groups[0] == list(model.parameters())
    assert_partition(model, groups)


@pytest.mark.parametrize('n,sizes', [(1, [5]), (2, [3, 2]), (3, [2, 2, 1]), (4, [2, 1, 1, 1]), (5, [1] * 5)])
def test_split_by_children_contiguous(n, sizes):
    model = tiny_cnn()
    groups = split_params(model, split_by_children(n))
    assert_partition(model, groups)
    # children per group, in order (paramless ReLU/pool/flatten children are not counted)
    kids = [sorted({nm.split('.')[0] for nm in g}, key=int) for g in names_of(model, groups)]
    assert [len(k) for k in kids] == sizes
    assert [c for k in kids for c in k] == ['0', '1', '3', '4', '8']


def test_split_by_children_tied_weights_go_to_first_group():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.mid, self.out = nn.Embedding(5, 4), nn.Linear(4, 4), nn.Linear(4, 5)
            self.out.weight = self.emb.weight
    model = Tied()
    groups = split_params(model, split_by_children(3))
    assert_partition(model, groups)
    assert groups[0] == [model.emb.weight] and groups[2] == [model.out.bias]


def test_split_by_children_looks_through_dataparallel():
    model = tiny_cnn()
    groups = split_params(nn.DataParallel(model), split_by_children(3))
    assert_partition(model, groups)


def resnet_prefix_groups(model):
    "Reference grouping from parameter names."
    parts = [('conv1', 'bn1', 'layer1', 'layer2'), ('layer3', 'layer4'), ('fc',)]
    return [[n for n, _ in model.named_parameters() if n.split('.')[0] in ps] for ps in parts]


@pytest.mark.parametrize('make', [lambda: small_resnet(), lambda: torchvision.models.resnet18(weights=None),
                                  lambda: small_resnet(5, 3, 'resnet50')], ids=['small18', 'tv18', 'small50'])
def test_resnet_splitter(make):
    model = make()
    groups = split_params(model, resnet_splitter)
    assert_partition(model, groups)
    assert names_of(model, groups) == resnet_prefix_groups(model)


def test_resnet_splitter_dataparallel():
    model = small_resnet()
    assert names_of(model, split_params(nn.DataParallel(model), resnet_splitter)) == resnet_prefix_groups(model)


def test_small_resnet_shape_and_stem():
    torch.manual_seed(0)
    model = small_resnet(n_classes=7, in_channels=2)
    assert isinstance(model, torchvision.models.ResNet)
    assert model.conv1.in_channels == 2 and model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.padding == (1, 1) and model.conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity) and model.fc.out_features == 7
    # torchvision's init: kaiming normal, fan_out, relu -> std sqrt(2 / (out_channels * 3 * 3))
    assert model.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.15)
    model.eval()
    with torch.no_grad(): assert model(torch.randn(3, 2, 8, 8)).shape == (3, 7)


def test_user_splitters():
    model = tiny_cnn()
    each = split_params(model, lambda m: [[p] for p in m.parameters()])
    assert len(each) == 10
    assert_partition(model, each)
    gen = split_params(model, lambda m: (m[:8].parameters(), m[8].parameters()))  # generators are accepted
    assert [len(g) for g in gen] == [8, 2]
    assert_partition(model, gen)


def test_missing_parameters_named():
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"exactly once; missing from every group: 8\.weight, 8\.bias$"):
        split_params(model, lambda m: [list(m[:8].parameters())])


def test_duplicated_parameters_named():
    model = tiny_cnn()
    with pytest.raises(ValueError, match=r"in more than one group: 4\.weight \(groups \[0, 1\]\)$"):
        split_params(model, lambda m: [list(m[:8].parameters()), [m[4].weight, *m[8].parameters()]])
    with pytest.raises(ValueError, match=r"0\.bias \(groups \[0, 0\]\)"):  # twice inside one group
        split_params(model, lambda m: [[m[0].bias, *m.parameters()]])


def test_missing_and_duplicated_together_and_truncated():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(6)])
    with pytest.raises(ValueError, match=r"missing from every group: (.+, ){7}4\.bias and 2 more; in more than one group: 0\.bias"):
        split_params(model, lambda m: [[m[0].weight, m[0].bias], [m[0].bias]])


def test_foreign_and_empty_and_malformed_groups():
    model, other = tiny_cnn(), tiny_cnn()
    with pytest.raises(ValueError, match=r"1 tensors that are not parameters of `model`"):
        split_params(model, lambda m: [list(m.parameters()) + [other[8].bias]])
    with pytest.raises(ValueError, match=r"groups \[1\] are empty"):
        split_params(model, lambda m: [list(m.parameters()), []])
    with pytest.raises(ValueError, match=r"at least one group"):
        split_params(model, lambda m: [])
    with pytest.raises(TypeError, match=r"single tensor; wrap a flat list"):
        split_params(model, lambda m: list(m.parameters()))
    with pytest.raises(TypeError, match=r"optimizer param-group dicts"):
        split_params(model, lambda m: [{'params': list(m.parameters())}])
    with pytest.raises(TypeError, match=r"`splitter\(model\)` must be a list of parameter lists"):
        split_params(model, lambda m: None)
    with pytest.raises(TypeError, match=r"not an nn.Parameter"):
        split_params(model, lambda m: [[p.detach() for p in m.parameters()]])

# ---------------------------------------------------------------------------------------------- spread_lrs

def test_slice_geometric_exact_values():
    lo, hi = 1e-5, 1e-3
    lrs = spread_lrs(slice(lo, hi), 3)
    assert lrs.dtype == np.float64 and lrs.shape == (3,)
    assert lrs[0] == lo and lrs[2] == hi
    assert lrs[1] == pytest.approx(math.sqrt(lo * hi), rel=1e-12)  # geometric mean in the middle
    np.testing.assert_allclose(spread_lrs(slice(1e-6, 1e-3), 4), [1e-6, 1e-5, 1e-4, 1e-3], rtol=1e-12)
    assert list(spread_lrs(slice(lo, hi), 2)) == [lo, hi]
    assert list(spread_lrs(slice(lo, hi), 1)) == [hi]  # fastai's even_mults: one group gets hi
    assert list(spread_lrs(slice(2e-3, 2e-3), 3)) == [2e-3] * 3


def test_slice_hi_fastai_rule():
    hi = 3e-3
    for lr in (slice(hi), slice(None, hi)):
        assert list(spread_lrs(lr, 4)) == [hi / 10] * 3 + [hi]
        assert list(spread_lrs(lr, 1)) == [hi]


@pytest.mark.parametrize('lr', [2e-3, np.float32(2e-3), np.array(2e-3), torch.tensor(2e-3, dtype=torch.float64)])
def test_scalar_repeated(lr):
    np.testing.assert_allclose(spread_lrs(lr, 3), [2e-3] * 3, rtol=1e-6)


def test_int_lr_and_numpy_int_groups():
    assert list(spread_lrs(1, np.int64(2))) == [1.0, 1.0]


@pytest.mark.parametrize('make', [list, tuple, np.array, lambda v: torch.tensor(v, dtype=torch.float64)])
def test_sequence_used_as_given(make):
    vals = [1e-4, 5e-4, 2e-3]
    src = make(vals)
    out = spread_lrs(src, 3)
    assert list(out) == vals
    out[0] = 1.0  # a fresh array: the caller's object is not aliased
    assert float(src[0]) == 1e-4



@pytest.mark.parametrize('lr', [3e-3, 1, np.float32(2e-3), slice(1e-4, 1e-2), slice(1e-2), [1e-4, 1e-3, 1e-2],
                                np.array([1, 2, 3], dtype=np.int32), torch.tensor([1e-4, 1e-3, 1e-2], dtype=torch.float32)])
def test_always_float64_array(lr):
    out = spread_lrs(lr, 3)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (3,)


def test_slice_ends_may_be_0d_arrays_and_tensors():
    assert list(spread_lrs(slice(np.array(1e-4), torch.tensor(1e-2, dtype=torch.float64)), 3)) == [1e-4, 1e-3, 1e-2]


@pytest.mark.parametrize('lr, exc, pattern', [
    (float('nan'), ValueError, r"^`lr_max` must be a finite number > 0, got nan$"),
    (slice(1e-2, 1e-4), ValueError, r"^`lr_max` must be slice\(lo, hi\) with lo <= hi"),
    (slice(0, 1e-3), ValueError, r"^`lr_max.start` must be a finite number > 0"),
    ([1e-3] * 4, ValueError, r"^`lr_max` must be a number > 0 or 3 numbers > 0 \(one per group\)"),
    ('fast', TypeError, r"^`lr_max` must be a number > 0, slice\(lo, hi\)"),
])
def test_errors_name_the_callers_parameter(lr, exc, pattern):
    with pytest.raises(exc, match=pattern) as e:
        spread_lrs(lr, 3, name='lr_max')
    assert '`lr`' not in str(e.value)
    # n_groups is spread_lrs' own parameter: still named as such
    with pytest.raises(ValueError, match=r"^`n_groups` must be an integer >= 1, got 0$"):
        spread_lrs(1e-3, 0, name='lr_max')


def test_import_leaves_torchvision_out():
    "`import cyclr.discriminative` (and `cyclr.data`) must not import torchvision: only `small_resnet` needs it."
    code = ("import sys, cyclr.discriminative, cyclr.data, cyclr.metrics, cyclr.models; "
            "assert 'torchvision' not in sys.modules, 'torchvision imported'; "
            "cyclr.discriminative.small_resnet(); assert 'torchvision' in sys.modules")
    subprocess.run([sys.executable, '-c', code], check=True, cwd=Path(__file__).resolve().parents[1])

log_lr = st.floats(min_value=-8, max_value=1, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(a=log_lr, b=log_lr, n=st.integers(1, 12))
def test_slice_properties(a, b, n):
    lo, hi = 10 ** min(a, b), 10 ** max(a, b)
    lrs = spread_lrs(slice(lo, hi), n)
    assert lrs.shape == (n,) and np.all(np.isfinite(lrs)) and np.all(lrs > 0)
    assert lrs[-1] == hi and (n == 1 or lrs[0] == lo)  # ends exact
    assert np.all(np.diff(lrs) >= 0)  # monotone, first group smallest
    if n > 1:  # constant ratio between neighbours: (hi/lo)**(1/(n-1))
        np.testing.assert_allclose(lrs[1:] / lrs[:-1], (hi / lo) ** (1 / (n - 1)), rtol=1e-9)


@pytest.mark.parametrize('lo', [1e-7, 2e-3, 0.1, 3.0])
def test_slice_nearly_equal_ends_stay_ordered_and_in_range(lo):
    for hi in (lo, np.nextafter(lo, np.inf), np.nextafter(np.nextafter(lo, np.inf), np.inf)):
        for n in (3, 7, 12):
            lrs = spread_lrs(slice(lo, hi), n)
            assert lrs[0] == lo and lrs[-1] == hi and np.all(np.diff(lrs) >= 0) and np.all((lrs >= lo) & (lrs <= hi))


@settings(max_examples=100, deadline=None)
@given(a=log_lr, n=st.integers(1, 12))
def test_slice_hi_and_scalar_properties(a, n):
    hi = 10 ** a
    lrs = spread_lrs(slice(hi), n)
    assert lrs[-1] == hi and np.all(lrs[:-1] == hi / 10)
    assert np.all(spread_lrs(hi, n) == hi) and spread_lrs(hi, n).shape == (n,)


def test_group_param_dicts_builds_optimizer():
    model, groups = cnn_groups()
    dicts = group_param_dicts(groups, slice(1e-5, 1e-3))
    assert [d['params'] for d in dicts] == groups and all(set(d) == {'params', 'lr'} for d in dicts)
    opt = torch.optim.SGD(dicts, lr=0.5)
    np.testing.assert_allclose([g['lr'] for g in opt.param_groups], [1e-5, 1e-4, 1e-3], rtol=1e-12)
    assert all(isinstance(g['lr'], float) for g in opt.param_groups)


def test_describe_groups():
    model, groups = cnn_groups()
    freeze(model, groups, train_bn=False)
    lines = describe_groups(model, groups, slice(1e-5, 1e-3)).splitlines()
    assert len(lines) == 4 and lines[0].split() == ['group', 'tensors', 'params', 'trainable', 'lr', 'first', '..', 'last']
    # group 0: conv 4*9+4 and bn 4+4 parameters, none trainable
    assert lines[1].split() == ['0', '4', '48', '0', '1e-05', '0.weight', '..', '1.bias']
    assert lines[3].split() == ['2', '2', '27', '27', '0.001', '8.weight', '..', '8.bias']

# ---------------------------------------------------------------------------------------------- norm layers

def test_is_bn_is_norm_norm_params():
    assert all(is_bn(m) for m in (nn.BatchNorm1d(2), nn.BatchNorm2d(2), nn.BatchNorm3d(2), nn.SyncBatchNorm(2)))
    assert not any(is_bn(m) for m in (nn.LayerNorm(2), nn.GroupNorm(1, 2), nn.InstanceNorm2d(2), nn.Linear(2, 2)))
    assert all(is_norm(m) for m in (nn.BatchNorm2d(2), nn.LayerNorm(2), nn.GroupNorm(1, 2), nn.InstanceNorm2d(2, affine=True)))
    assert not is_norm(nn.Conv2d(1, 1, 1))
    model = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 4), nn.GroupNorm(2, 4), nn.BatchNorm1d(4, affine=False))
    assert norm_params(model) == [model[1].weight, model[1].bias, model[3].weight, model[3].bias]

# ---------------------------------------------------------------------------------------------- freezing

FREEZE_CASES = [(n, bn) for n in (1, 2, -1, -2) for bn in (True, False)] + [(3, True), (0, False), (-3, True)]
N_FROZEN = {0: 0, 1: 1, 2: 2, 3: 3, -1: 2, -2: 1, -3: 0}


@pytest.mark.parametrize('opt_name', OPTIMIZERS)
@pytest.mark.parametrize('n,train_bn', FREEZE_CASES)
def test_frozen_parameters_do_not_change(opt_name, n, train_bn):
    model, groups = cnn_groups()
    opt = OPTIMIZERS[opt_name](groups)
    assert freeze_to(model, groups, n, train_bn=train_bn) == N_FROZEN[n]
    before = snapshot(model)
    train_steps(model, opt)
    assert len(opt.param_groups) == 3
    for name, p in model.named_parameters():
        frozen = CNN_GROUP_OF_CHILD[name.split('.')[0]] < N_FROZEN[n] and not (train_bn and name in CNN_BN)
        assert p.requires_grad == (not frozen), name
        if frozen: assert torch.equal(p, before[name]) and p.grad is None, name
        else: assert not torch.equal(p, before[name]), name


@pytest.mark.parametrize('opt_name', OPTIMIZERS)
def test_freeze_after_optimizer_state_built(opt_name):
    "Momentum buffers / Adam moments and weight decay must not move parameters frozen later."
    model, groups = cnn_groups()
    opt = OPTIMIZERS[opt_name](groups)
    train_steps(model, opt, seed=2)
    assert len(opt.state) == 10  # every parameter has optimizer state now
    freeze(model, groups)
    before = snapshot(model)
    train_steps(model, opt, seed=3)
    for name, p in model.named_parameters():
        frozen = CNN_GROUP_OF_CHILD[name.split('.')[0]] < 2 and name not in CNN_BN
        assert torch.equal(p, before[name]) == frozen, name


def test_freeze_between_backward_and_step_drops_gradients():
    model, groups = cnn_groups()
    opt = OPTIMIZERS['sgd_momentum_wd'](groups)
    F.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.randint(0, 3, (8,))).backward()
    assert all(p.grad is not None for p in model.parameters())
    freeze(model, groups, train_bn=False)
    before = snapshot(model)
    opt.step()
    opt.zero_grad(set_to_none=False)  # zero-filling keeps frozen gradients absent
    assert all(p.grad is None for g in groups[:2] for p in g)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if not n.startswith('8.'))
    assert not torch.equal(model[8].weight, before['8.weight'])


def test_train_bn_covers_other_norm_layers():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 6), nn.GroupNorm(2, 6), nn.Linear(6, 2))
    groups = split_params(model, split_by_children(2))  # [lin, ln, lin] / [gn, lin]
    freeze(model, groups)
    assert [p.requires_grad for p in groups[0]] == [False, False, True, True, False, False]
    assert all(p.requires_grad for p in groups[1])


@pytest.mark.parametrize('n', range(-3, 4))
def test_negative_n_counts_from_end(n):
    model, groups = cnn_groups()
    freeze_to(model, groups, n, train_bn=False)
    k = n if n >= 0 else 3 + n
    assert [all(p.requires_grad for p in g) for g in groups] == [i >= k for i in range(3)]
    assert [any(p.requires_grad for p in g) for g in groups] == [i >= k for i in range(3)]


def test_freeze_unfreeze_and_single_group():
    model, groups = cnn_groups()
    assert freeze(model, groups) == 2
    assert unfreeze(model, groups) == 0
    assert all(p.requires_grad for p in model.parameters())
    one = [list(model.parameters())]
    freeze_to(model, groups, 3, train_bn=False)
    assert freeze(model, one) == 0 and all(p.requires_grad for p in model.parameters())  # like fastai
    assert freeze_to(model, groups, np.int64(1)) == 1


def test_optimizer_param_groups_untouched():
    model, groups = cnn_groups()
    opt = OPTIMIZERS['adamw_wd'](groups)
    def view(): return [([id(p) for p in g['params']], g['lr'], g['weight_decay']) for g in opt.param_groups]
    start = view()
    for step in (lambda: freeze(model, groups), lambda: freeze_to(model, groups, -2), lambda: unfreeze(model, groups),
                 lambda: freeze_to(model, groups, 3, train_bn=False)):
        step()
        assert view() == start


@pytest.mark.parametrize('bad', [
    lambda m, g: freeze_to(m, g, 4), lambda m, g: freeze_to(m, g, 0, train_bn=1),
    lambda m, g: freeze_to(m, g[:2], 0), lambda m, g: freeze_to(m, g + [[m[8].bias]], 0),
    lambda m, g: unfreeze(tiny_cnn(), g)])
def test_bad_call_leaves_state_unchanged(bad):
    model, groups = cnn_groups()
    freeze(model, groups)
    F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.randint(0, 3, (4,))).backward()
    state = [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    with pytest.raises((ValueError, TypeError)):
        bad(model, groups)
    after = [(p.requires_grad, p.grad) for p in model.parameters()]
    assert [s[0] for s in state] == [a[0] for a in after]
    assert all((s is None and a is None) or torch.equal(s, a) for (_, s), (_, a) in zip(state, after))

# ---------------------------------------------------------------------------------------------- BN statistics

def bn_buffers(bn):
    return bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()


def same(a, b): return all(torch.equal(x, y) for x, y in zip(a, b))


def test_bn_stats_fixed_only_with_switch():
    model, groups = cnn_groups()
    freeze(model, groups)
    x = torch.randn(16, 1, 8, 8) * 2 + 3
    s1, s4 = bn_buffers(model[1]), bn_buffers(model[4])
    model.train()
    assert set_bn_eval(model, groups, -1) == [model[1], model[4]]
    model(x)
    assert same(bn_buffers(model[1]), s1) and same(bn_buffers(model[4]), s4)
    model.train()  # undoes the switch: statistics move again
    assert model[1].training
    model(x)
    assert not torch.equal(model[1].running_mean, s1[0]) and not torch.equal(model[4].running_var, s4[1])


def test_bn_switch_only_frozen_groups_and_never_turns_training_on():
    model, groups = cnn_groups()
    model.train()
    s4 = bn_buffers(model[4])
    assert set_bn_eval(model, groups, 1) == [model[1]]
    assert not model[1].training and model[4].training
    model(torch.randn(8, 1, 8, 8) + 1)
    assert not torch.equal(model[4].running_mean, s4[0])  # group 1 trains: its statistics update
    model.eval()
    set_bn_eval(model, groups, 0)
    assert not any(m.training for m in model.modules())
    model.train()
    assert set_bn_eval(model, groups, 0) == [] and all(m.training for m in model.modules())


def test_bn_without_affine_goes_with_neighbouring_group():
    model = nn.Sequential(nn.BatchNorm1d(4, affine=False), nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False),
                          nn.Linear(4, 4), nn.BatchNorm1d(4, affine=False), nn.Linear(4, 2))
    groups = split_params(model, split_by_children(3))  # one Linear per group
    # the first BN comes before any parameter: it goes with the following Linear (group 0)
    assert set_bn_eval(model, groups, 1) == [model[0], model[2]]
    model.train()
    assert set_bn_eval(model, groups, 2) == [model[0], model[2], model[4]]


def test_bn_switch_on_resnet():
    torch.manual_seed(0)
    model = small_resnet()
    groups = split_params(model, resnet_splitter)
    freeze(model, groups)
    model.train()
    frozen = set_bn_eval(model, groups, -1)
    expect = [m for n, m in model.named_modules() if is_bn(m) and n.split('.')[0] in ('bn1', 'layer1', 'layer2', 'layer3', 'layer4')]
    assert frozen == expect and len(expect) == 20
    model.train()
    frozen = set_bn_eval(model, groups, 1)
    late = model.layer3[0].bn1
    before_early, before_late = bn_buffers(model.bn1), bn_buffers(late)
    model(torch.randn(4, 1, 8, 8))
    assert same(bn_buffers(model.bn1), before_early) and not torch.equal(late.running_mean, before_late[0])

# ---------------------------------------------------------------------------------------------- bad input table

_M, _G = cnn_groups()
BAD_CALLS = [
    (lambda: spread_lrs(slice(1e-3, 1e-5), 3), ValueError, r"`lr` must be slice\(lo, hi\) with lo <= hi .*, got slice\(0.001, 1e-05"),
    (lambda: spread_lrs(0., 3), ValueError, r"`lr` must be a finite number > 0, got 0.0"),
    (lambda: spread_lrs(-1e-3, 3), ValueError, r"`lr` must be a finite number > 0, got -0.001"),
    (lambda: spread_lrs(float('inf'), 3), ValueError, r"`lr` must be a finite number > 0, got inf"),
    (lambda: spread_lrs(float('nan'), 3), ValueError, r"`lr` must be a finite number > 0, got nan"),
    (lambda: spread_lrs(slice(0, 1e-3), 3), ValueError, r"`lr.start` must be a finite number > 0, got 0"),
    (lambda: spread_lrs(slice(1e-5, -1e-3), 3), ValueError, r"`lr.stop` must be a finite number > 0, got -0.001"),
    (lambda: spread_lrs(slice(1e-5, 1e-3, 2), 3), ValueError, r"`lr` must be slice\(lo, hi\) or slice\(hi\): .*no step"),
    (lambda: spread_lrs(slice(1e-5, None), 3), ValueError, r"`lr` must be slice\(lo, hi\) or slice\(hi\): a slice with an end hi"),
    (lambda: spread_lrs(slice(None), 3), ValueError, r"`lr` must be slice\(lo, hi\) or slice\(hi\): a slice with an end hi"),
    (lambda: spread_lrs([1e-4] * 4, 3), ValueError, r"`lr` must be a number > 0 or 3 numbers > 0 \(one per group\), got \[0.0001"),
    (lambda: spread_lrs((1e-4, 1e-3), 3), ValueError, r"`lr` must be a number > 0 or 3 numbers > 0 \(one per group\)"),
    (lambda: spread_lrs(np.ones((3, 1)), 3), ValueError, r"`lr` must be a number > 0 or a non-empty 1-d array"),
    (lambda: spread_lrs(np.array([]), 3), ValueError, r"`lr` must be a number > 0 or a non-empty 1-d array"),
    (lambda: spread_lrs([1e-4, -1., 1e-3], 3), ValueError, r"`lr` must be a number > 0 or a 1-d array of finite numbers > 0"),
    (lambda: spread_lrs([1e-4, float('nan'), 1e-3], 3), ValueError, r"`lr` must be a number > 0 or a 1-d array of finite"),
    (lambda: spread_lrs('1e-3', 3), TypeError, r"`lr` must be a number > 0, slice\(lo, hi\), slice\(hi\) or 3 numbers > 0 \(one per group\), got str"),
    (lambda: spread_lrs(None, 3), TypeError, r"`lr` must be a number > 0, slice\(lo, hi\), slice\(hi\) or 3 numbers"),
    (lambda: spread_lrs(True, 3), TypeError, r"`lr` must be a number > 0, slice.*, got bool True"),
    (lambda: spread_lrs([[1e-3], 1e-3, 1e-3], 3), TypeError, r"`lr` must be a number > 0 or a 1-d array of them"),
    (lambda: spread_lrs(slice('a', 1e-3), 3), TypeError, r"`lr.start` must be a finite number > 0, got str 'a'"),
    (lambda: spread_lrs(slice(1e-5, True), 3), TypeError, r"`lr.stop` must be a finite number > 0, got bool True"),
    (lambda: spread_lrs(1e-3, 0), ValueError, r"`n_groups` must be an integer >= 1, got 0"),
    (lambda: spread_lrs(1e-3, 2.0), TypeError, r"`n_groups` must be an integer >= 1"),
    (lambda: split_by_children(0), ValueError, r"`n` must be an integer >= 1, got 0"),
    (lambda: split_by_children('2'), TypeError, r"`n` must be an integer >= 1"),
    (lambda: split_by_children(6)(_M), ValueError, r"`n` must be an integer in \[1, 5\] \(the direct children .*got 6"),
    (lambda: split_params(_M, 'children'), TypeError, r"`splitter` must be a function"),
    (lambda: split_params('model'), TypeError, r"`model` must be a torch.nn.Module"),
    (lambda: resnet_splitter(_M), TypeError, r"`model` must be a ResNet with modules conv1, .*lacks conv1"),
    (lambda: freeze_to(_M, _G, 4), ValueError, r"`n` must be an integer in \[-3, 3\]"),
    (lambda: freeze_to(_M, _G, -4), ValueError, r"`n` must be an integer in \[-3, 3\]"),
    (lambda: freeze_to(_M, _G, 1.0), TypeError, r"`n` must be an integer in \[-3, 3\]"),
    (lambda: freeze_to(_M, _G, True), TypeError, r"`n` must be an integer in \[-3, 3\]"),
    (lambda: freeze_to(_M, _G, 1, train_bn='yes'), TypeError, r"`train_bn` must be True or False"),
    (lambda: freeze_to(_M, _G[:2], 1), ValueError, r"`groups` must hold every parameter of `model` exactly once; missing"),
    (lambda: freeze_to(_M, list(_M.parameters()), 1), TypeError, r"`groups` must be a list of parameter lists"),
    (lambda: set_bn_eval(_M, _G, 5), ValueError, r"`n` must be an integer in \[-3, 3\]"),
    (lambda: group_param_dicts(_G, slice(1e-2, 1e-3)), ValueError, r"`lr` must be slice\(lo, hi\) with lo <= hi"),
    (lambda: group_param_dicts(_G, [1e-3] * 2), ValueError, r"`lr` must be a number > 0 or 3 numbers > 0 \(one per group\)"),
    (lambda: describe_groups(_M, _G, lr=[1e-3] * 2), ValueError, r"`lr` must be a number > 0 or 3 numbers > 0"),
    (lambda: small_resnet(arch='vgg16'), ValueError, r"`arch` must be one of 'resnet18', 'resnet34', .*got 'vgg16'"),
    (lambda: small_resnet(n_classes=0), ValueError, r"`n_classes` must be an integer >= 1"),
    (lambda: small_resnet(in_channels=1.5), TypeError, r"`in_channels` must be an integer >= 1"),
]


@pytest.mark.parametrize('call,exc,pattern', BAD_CALLS, ids=[f'bad{i:02d}' for i in range(len(BAD_CALLS))])
def test_bad_input(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
