"Tests for cyclr.data: DataLoaders, digits(), image_folder()."
import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from cyclr.data import DataLoaders, digits, image_folder, imagenet_stats

torch.set_num_threads(1)

N_DIGITS = 1797


@pytest.fixture(scope='module')
def sk():
    "The reference data straight from scikit-learn: images (N, 8, 8) in 0..16, labels."
    d = load_digits()
    return d.images, d.target


def _expected_n_valid(labels, valid_pct, classes=None):
    "Held-out count by the documented rule: per class floor(valid_pct * n_c + 1/2)."
    counts = np.bincount(labels, minlength=10)
    classes = range(10) if classes is None else classes
    return sum(math.floor(valid_pct * counts[c] + 0.5) for c in classes)


def _tensors(dl):
    return dl.dataset.tensors


def _epoch(dl):
    "All labels of one pass over `dl`, in the order the loader yields them."
    return torch.cat([yb for _, yb in dl])


# ---------------------------------------------------------------------------------------- DataLoaders

def _dl(n=10, bs=4, **kw):
    return DataLoader(TensorDataset(torch.randn(n, 2), torch.arange(n)), batch_size=bs, **kw)


def test_dataloaders_pair():
    tr, va = _dl(), _dl(6)
    dls = DataLoaders(tr, va)
    assert dls.train is tr and dls.valid is va
    assert len(dls) == 2 and list(dls) == [tr, va]
    t, v = dls  # unpacking works when both are there
    assert t is tr and v is va
    assert dls.classes is None and dls.c is None


def test_dataloaders_train_only():
    dls = DataLoaders(_dl())
    assert dls.valid is None and len(dls) == 1 and list(dls) == [dls.train]
    assert 'valid: None' in repr(dls)


def test_dataloaders_repr_counts():
    r = repr(DataLoaders(_dl(10, 4), _dl(1, 4), classes=['a', 'b']))
    # ceil(10/4) = 3 batches; one item gives one batch (singular)
    assert r.startswith('DataLoaders(') and '3 batches of 4 (10 items)' in r and '1 batch of 4 (1 items)' in r
    assert "['a', 'b']" in r


def test_dataloaders_repr_many_classes_truncated():
    r = repr(DataLoaders(_dl(), classes=list(range(100))))
    assert '...' in r and '99' not in r


def test_dataloaders_accepts_plain_iterables():
    batches = [(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))]
    assert DataLoaders(batches).train is batches
    gen = (b for b in batches)  # no len: cannot be checked for emptiness, so accepted
    assert DataLoaders(gen).train is gen


def test_dataloaders_classes_and_c():
    dls = DataLoaders(_dl(), classes=('cat', 'dog', 'emu'))
    assert dls.classes == ['cat', 'dog', 'emu'] and dls.c == 3


@pytest.mark.parametrize('bad, exc, name', [
    (_dl(0, shuffle=False), ValueError, 'train'),           # empty dataset: 0 batches
    (_dl(3, 4, drop_last=True), ValueError, 'train'),       # fewer items than a batch, dropped
    ([], ValueError, 'train'),
    (TensorDataset(torch.zeros(3)), TypeError, 'train'),    # a Dataset is not a loader
    (5, TypeError, 'train'),
    (None, TypeError, 'train'),
    (torch.zeros(3, 2), TypeError, 'train'),
    ('batches', TypeError, 'train'),
])
def test_dataloaders_bad_train(bad, exc, name):
    with pytest.raises(exc, match=f'`{name}`'):
        DataLoaders(bad)


@pytest.mark.parametrize('bad, exc', [(_dl(0, shuffle=False), ValueError), (TensorDataset(torch.zeros(3)), TypeError)])
def test_dataloaders_bad_valid(bad, exc):
    with pytest.raises(exc, match='`valid`'):
        DataLoaders(_dl(), bad)


@pytest.mark.parametrize('bad, exc', [([], ValueError), ('ab', TypeError), (3, TypeError)])
def test_dataloaders_bad_classes(bad, exc):
    with pytest.raises(exc, match='`classes`'):
        DataLoaders(_dl(), classes=bad)


def test_from_dsets():
    ds = TensorDataset(torch.arange(10.), torch.arange(10))
    dls = DataLoaders.from_dsets(ds, ds, bs=3, seed=0)
    assert len(dls.train) == 4 and dls.train.batch_size == 3
    assert torch.equal(_epoch(dls.valid), torch.arange(10))            # validation in order
    assert sorted(_epoch(dls.train).tolist()) == list(range(10))       # training: a permutation
    # the training order is that of torch's own shuffling DataLoader with a generator seeded with `seed`
    ref = DataLoader(ds, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)  # the global RNG plays no part
    assert torch.equal(_epoch(DataLoaders.from_dsets(ds, bs=3, seed=0).train), _epoch(ref))


@pytest.mark.parametrize('kw, exc, name', [
    (dict(bs=0), ValueError, 'bs'), (dict(bs=1.5), TypeError, 'bs'), (dict(seed=-1), ValueError, 'seed'),
    (dict(num_workers=-1), ValueError, 'num_workers'),
])
def test_from_dsets_bad_args(kw, exc, name):
    ds = TensorDataset(torch.arange(4.))
    with pytest.raises(exc, match=f'`{name}`'):
        DataLoaders.from_dsets(ds, **kw)


def test_from_dsets_bad_datasets():
    with pytest.raises(ValueError, match='`train_ds`'):
        DataLoaders.from_dsets(TensorDataset(torch.zeros(0)))
    with pytest.raises(TypeError, match='`valid_ds`'):
        DataLoaders.from_dsets(TensorDataset(torch.zeros(2)), [1, 2])


# ---------------------------------------------------------------------------------------- digits

@pytest.fixture(scope='module')
def dls():
    return digits()


def test_digits_shapes_dtypes_range(dls):
    xb, yb = next(iter(dls.train))
    assert xb.shape == (64, 1, 8, 8) and xb.dtype == torch.float32 and yb.shape == (64,) and yb.dtype == torch.int64
    xs, ys = _tensors(dls.train)
    assert xs.min().item() == 0. and xs.max().item() == 1.
    assert torch.equal(xs * 16, (xs * 16).round())  # pixels are k/16
    assert dls.c == 10 and dls.classes == list(range(10))


def test_digits_split_sizes(dls, sk):
    _, y = sk
    n_valid = _expected_n_valid(y, 0.2)
    assert n_valid == 359  # 36+36+35+37+36+36+36+36+35+36 for class sizes 178 182 177 183 181 182 181 179 174 180
    assert len(dls.valid.dataset) == n_valid and len(dls.train.dataset) == N_DIGITS - n_valid
    assert len(dls.train) == math.ceil((N_DIGITS - n_valid) / 64) and len(dls.valid) == math.ceil(n_valid / 64)
    # stratified: per class the documented rounding of 20%
    counts = np.bincount(y, minlength=10)
    got = torch.bincount(_tensors(dls.valid)[1], minlength=10).numpy()
    assert got.tolist() == [math.floor(0.2 * c + 0.5) for c in counts]


def test_digits_partition_matches_sklearn(dls, sk):
    "Train and valid together are scikit-learn's data set exactly once, images paired with their labels."
    x, y = sk
    def keys(xs, ys): return sorted((xi.tobytes(), int(yi)) for xi, yi in zip(xs, ys))
    xt, yt = _tensors(dls.train)
    xv, yv = _tensors(dls.valid)
    ours = torch.cat([xt, xv])[:, 0] * 16
    assert keys(ours.numpy().astype(np.float64), torch.cat([yt, yv]).numpy()) == keys(x, y)


def test_digits_no_overlap(dls):
    xt, _ = _tensors(dls.train)
    xv, _ = _tensors(dls.valid)
    # scikit-learn's digits contain no exact duplicates between the sides of our split
    tr = {r.tobytes() for r in xt.numpy()}
    assert not any(r.tobytes() in tr for r in xv.numpy())


def test_digits_valid_unshuffled(dls):
    assert torch.equal(_epoch(dls.valid), _tensors(dls.valid)[1])
    assert torch.equal(_epoch(dls.valid), _epoch(dls.valid))


def test_digits_train_shuffled(dls):
    e1 = _epoch(dls.train)
    assert not torch.equal(e1, _tensors(dls.train)[1])       # not the dataset order
    assert sorted(e1.tolist()) == sorted(_tensors(dls.train)[1].tolist())


def test_digits_same_seed_same_everything():
    torch.manual_seed(0); np.random.seed(0)
    a = digits(seed=7)
    torch.manual_seed(99); np.random.seed(99)
    b = digits(seed=7)
    for s in ('train', 'valid'):
        for ta, tb in zip(_tensors(getattr(a, s)), _tensors(getattr(b, s))):
            assert torch.equal(ta, tb)
    torch.manual_seed(1)
    ea = [_epoch(a.train) for _ in range(2)]
    torch.manual_seed(2)
    eb = [_epoch(b.train) for _ in range(2)]
    assert torch.equal(ea[0], eb[0]) and torch.equal(ea[1], eb[1])
    assert not torch.equal(ea[0], ea[1])  # a new order every epoch


def test_digits_leaves_global_rngs_alone():
    torch.manual_seed(3); np.random.seed(3)
    ts, ns = torch.get_rng_state(), np.random.get_state()[1].copy()
    dls = digits(seed=5, n_train=100)
    _epoch(dls.train)
    assert torch.equal(torch.get_rng_state(), ts) and np.array_equal(np.random.get_state()[1], ns)


def test_digits_different_seeds_differ():
    a, b = digits(seed=1), digits(seed=2)
    assert not torch.equal(_tensors(a.valid)[0], _tensors(b.valid)[0])
    assert len(a.valid.dataset) == len(b.valid.dataset)  # same stratified sizes


@pytest.mark.parametrize('valid_pct', [0.1, 0.5, 0.9])
def test_digits_valid_pct(valid_pct, sk):
    d = digits(valid_pct=valid_pct)
    assert len(d.valid.dataset) == _expected_n_valid(sk[1], valid_pct)
    assert len(d.valid.dataset) + len(d.train.dataset) == N_DIGITS


def test_digits_batch_size():
    d = digits(bs=100)
    assert [len(yb) for _, yb in d.train] == [100] * 14 + [1438 - 1400]


def test_digits_classes_remap(dls, sk):
    d = digits(classes=[9, 5])  # order given: 9 -> 0, 5 -> 1
    assert d.classes == [9, 5] and d.c == 2
    for s in ('train', 'valid'):
        full_x, full_y = _tensors(getattr(dls, s))
        x, y = _tensors(getattr(d, s))
        assert set(y.tolist()) == {0, 1}
        # the same images the full data set puts on this side, relabelled
        keep = (full_y == 9) | (full_y == 5)
        assert torch.equal(x, full_x[keep])
        assert torch.equal(torch.tensor([9, 5])[y], full_y[keep])
    assert len(d.valid.dataset) == _expected_n_valid(sk[1], 0.2, classes=[9, 5])


def test_digits_classes_no_remap(dls):
    d = digits(classes=[5, 6, 7, 8, 9], remap=False)
    y = _tensors(d.train)[1]
    assert set(y.tolist()) == {5, 6, 7, 8, 9} and d.c == 10 and d.classes == list(range(10))


def test_digits_pretrain_finetune_classes_disjoint():
    a, b = digits(classes=range(5)), digits(classes=np.arange(5, 10))
    assert a.c == b.c == 5
    xa = {r.tobytes() for r in torch.cat([_tensors(a.train)[0], _tensors(a.valid)[0]]).numpy()}
    xb = torch.cat([_tensors(b.train)[0], _tensors(b.valid)[0]]).numpy()
    assert len(xa) > 0 and not any(r.tobytes() in xa for r in xb)


def test_digits_n_train_total(dls):
    d20, d50 = digits(n_train=20), digits(n_train=50)
    assert len(d20.train.dataset) == 20 and len(d50.train.dataset) == 50
    # smaller is a subset of larger; the validation set is untouched
    k20 = {r.tobytes() for r in _tensors(d20.train)[0].numpy()}
    k50 = {r.tobytes() for r in _tensors(d50.train)[0].numpy()}
    assert k20 <= k50
    assert torch.equal(_tensors(d20.valid)[0], _tensors(dls.valid)[0])
    full = {r.tobytes() for r in _tensors(dls.train)[0].numpy()}
    assert k50 <= full
    assert torch.equal(_tensors(digits(n_train=20).train)[0], _tensors(d20.train)[0])  # same seed, same pick
    assert len(digits(n_train=1438).train.dataset) == 1438


def test_digits_n_train_per_class():
    d = digits(classes=[5, 6, 7, 8, 9], n_train=3, per_class=True)
    y = _tensors(d.train)[1]
    assert torch.equal(torch.bincount(y), torch.full((5,), 3))
    assert len(d.train) == 1  # 15 items in one batch of 64


def test_digits_n_train_does_not_move_split(dls):
    d = digits(n_train=10, per_class=True)
    assert torch.equal(_tensors(d.valid)[0], _tensors(dls.valid)[0])


def test_digits_n_train_too_large(sk):
    n_tr = N_DIGITS - _expected_n_valid(sk[1], 0.2)
    with pytest.raises(ValueError, match=rf'`n_train` must be an integer in \[1, {n_tr}\]'):
        digits(n_train=n_tr + 1)
    # fewest training images of a class: class 8 with 174 - 35 = 139
    with pytest.raises(ValueError, match=r'`n_train` must be an integer in \[1, 139\] with per_class=True'):
        digits(n_train=140, per_class=True)


@pytest.mark.parametrize('kw, exc, name', [
    (dict(bs=0), ValueError, 'bs'), (dict(bs=-3), ValueError, 'bs'), (dict(bs=2.5), TypeError, 'bs'),
    (dict(bs=True), TypeError, 'bs'), (dict(bs='64'), TypeError, 'bs'),
    (dict(valid_pct=0), ValueError, 'valid_pct'), (dict(valid_pct=1), ValueError, 'valid_pct'),
    (dict(valid_pct=-0.2), ValueError, 'valid_pct'), (dict(valid_pct=1.5), ValueError, 'valid_pct'),
    (dict(valid_pct=float('nan')), ValueError, 'valid_pct'), (dict(valid_pct='0.2'), TypeError, 'valid_pct'),
    (dict(valid_pct=0.001), ValueError, 'valid_pct'),   # rounds to 0 validation items per class
    (dict(valid_pct=0.999), ValueError, 'valid_pct'),   # rounds to 0 training items
    (dict(seed=-1), ValueError, 'seed'), (dict(seed=1.0), TypeError, 'seed'), (dict(seed=None), TypeError, 'seed'),
    (dict(num_workers=-1), ValueError, 'num_workers'),
    (dict(classes=[10]), ValueError, 'classes'), (dict(classes=[-1]), ValueError, 'classes'),
    (dict(classes=[1, 1]), ValueError, 'classes'), (dict(classes=[]), ValueError, 'classes'),
    (dict(classes=[1.0]), TypeError, 'classes'), (dict(classes='01'), TypeError, 'classes'),
    (dict(classes=3), TypeError, 'classes'),
    (dict(n_train=0), ValueError, 'n_train'), (dict(n_train=5.0), TypeError, 'n_train'),
])
def test_digits_bad_args(kw, exc, name):
    with pytest.raises(exc, match=f'`{name}`'):
        digits(**kw)


def test_digits_error_names_range():
    with pytest.raises(ValueError, match=r'\(0, 1\)'):
        digits(valid_pct=2)
    with pytest.raises(ValueError, match=r'`classes` must be .*integers in \[0, 9\].*, got \[11\]'):
        digits(classes=[11])
    with pytest.raises(ValueError, match='>= 1'):
        digits(bs=0)


def test_digits_numpy_ints_accepted():
    d = digits(bs=np.int64(32), seed=np.int32(1), classes=np.array([0, 1]))
    assert d.train.batch_size == 32 and d.classes == [0, 1]
    assert all(type(c) is int for c in d.classes)


def test_digits_num_workers_same_batches():
    a, b = digits(n_train=100, bs=32), digits(n_train=100, bs=32, num_workers=1)
    for (xa, ya), (xb, yb) in zip(a.train, b.train):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_digits_cache_not_mutable():
    d = digits(n_train=10)
    _tensors(d.train)[0].mul_(0)  # mutating one result ...
    assert _tensors(digits(n_train=10).train)[0].max() == 1  # ... does not reach the next


def test_digits_learnable():
    "Images and labels line up: a linear model fits in a few steps well above chance."
    torch.manual_seed(0)
    d = digits(bs=128)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(3):
        for xb, yb in d.train:
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(); loss.backward(); opt.step()
    xv, yv = _tensors(d.valid)
    assert (model(xv).argmax(1) == yv).float().mean() > 0.85


# ---------------------------------------------------------------------------------------- image_folder

def _color(k, i):
    "A distinct RGB colour for image `i` of class `k`, so a loaded tensor tells which file it came from."
    return (40 * k + 10, 7 * i + 3, 200 - 5 * i)


def _write_class_folders(root, classes='abc', n=5, size=(6, 5), mode='RGB'):
    "Write `n` solid-colour PNGs of `size` (w, h) for each class folder under `root`."
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            col = _color(k, i) if mode == 'RGB' else _color(k, i)[1]
            Image.new(mode, size, col).save(root / c / f'{i}.png')


def _rgb_ref(label, x):
    "Which image (k, i) a loaded tensor `x` (3, H, W) is, checked against its colour."
    col = tuple(round(v * 255) for v in x[:, 0, 0].tolist())
    i = (col[1] - 3) // 7
    assert col == _color(int(label), i), (label, col)
    return int(label), i


def test_image_folder_split_layout(tmp_path):
    _write_class_folders(tmp_path, 'abc', n=5)
    d = image_folder(tmp_path, bs=4)
    assert d.classes == ['a', 'b', 'c'] and d.c == 3
    # 5 per class, 20% of 5 = 1 held out per class
    assert len(d.valid.dataset) == 3 and len(d.train.dataset) == 12
    seen = []
    for s in (d.train, d.valid):
        for xb, yb in s:
            assert xb.shape[1:] == (3, 5, 6) and xb.dtype == torch.float32
            for x, y in zip(xb, yb):
                k, i = _rgb_ref(y, x)
                # the whole image is its solid colour / 255 (ToTensor scales uint8 by 1/255)
                assert torch.equal(x, (torch.tensor(_color(k, i)).float() / 255)[:, None, None].expand(3, 5, 6))
                seen.append((k, i))
    assert sorted(seen) == [(k, i) for k in range(3) for i in range(5)]  # every file once, labelled right
    assert sorted(int(y) for _, yb in d.valid for y in yb) == [0, 1, 2]


def test_image_folder_split_seeded(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=20)
    def valid_files(d): return [d.valid.dataset.dataset.samples[i][0] for i in d.valid.dataset.indices]
    def train_order(d): return [_rgb_ref(y, x) for xb, yb in d.train for x, y in zip(xb, yb)]
    torch.manual_seed(0)
    a = image_folder(tmp_path, bs=8, seed=3)
    torch.manual_seed(1)
    b = image_folder(tmp_path, bs=8, seed=3)
    assert valid_files(a) == valid_files(b) and train_order(a) == train_order(b)
    c = image_folder(tmp_path, bs=8, seed=4)
    assert valid_files(a) != valid_files(c)
    assert len(valid_files(a)) == 8  # 4 of 20 per class


def test_image_folder_train_valid_layout(tmp_path):
    _write_class_folders(tmp_path / 'train', 'xy', n=4)
    _write_class_folders(tmp_path / 'valid', 'xy', n=2)
    d = image_folder(tmp_path, bs=3, valid_pct=0.5)  # valid_pct unused here
    assert d.classes == ['x', 'y']
    assert len(d.train.dataset) == 8 and len(d.valid.dataset) == 2 * 2
    assert [y for _, yb in d.valid for y in yb.tolist()] == [0, 0, 1, 1]  # in folder order
    xs = torch.cat([xb for xb, _ in d.valid])
    # the valid images are the first two colours of each class
    assert [_rgb_ref(y, x) for x, y in zip(xs, [0, 0, 1, 1])] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_image_folder_custom_folder_names(tmp_path):
    _write_class_folders(tmp_path / 'tr', 'xy', n=2)
    _write_class_folders(tmp_path / 'val', 'xy', n=1)
    d = image_folder(tmp_path, train='tr', valid='val')
    assert len(d.train.dataset) == 4 and len(d.valid.dataset) == 2


def test_image_folder_train_without_valid(tmp_path):
    _write_class_folders(tmp_path / 'train', 'xy', n=2)
    _write_class_folders(tmp_path / 'val', 'xy', n=1)
    with pytest.raises(ValueError, match='`path`.*`valid`'):
        image_folder(tmp_path)


def test_image_folder_class_mismatch(tmp_path):
    _write_class_folders(tmp_path / 'train', 'xy', n=2)
    _write_class_folders(tmp_path / 'valid', 'xz', n=1)
    with pytest.raises(ValueError, match='`path`'):
        image_folder(tmp_path)


def test_image_folder_grayscale_exact(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=5, mode='L')
    d = image_folder(tmp_path, grayscale=True)
    for xb, yb in d.train:
        assert xb.shape[1:] == (1, 5, 6)
        # a grey PNG read as RGB and back to grey keeps its value: (7*i + 3) / 255 for some i
        v = (xb[:, 0, 0, 0] * 255).round()
        assert torch.allclose(xb[:, 0, 0, 0], v / 255) and ((v - 3) % 7 == 0).all()


def test_image_folder_grayscale_from_rgb(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=3)  # two classes: one class alone is refused
    d = image_folder(tmp_path, grayscale=True, valid_pct=0.4)
    for xb, yb in d.train:
        for x, y in zip(xb, yb):
            # ITU-R 601-2 luma, L = (299 R + 587 G + 114 B) / 1000, within PIL's rounding
            lumas = [(299 * r + 587 * g + 114 * b) / 1000 / 255 for r, g, b in (_color(int(y), i) for i in range(3))]
            assert min(abs(x[0, 0, 0].item() - l) for l in lumas) <= 1 / 255


def test_image_folder_resize(tmp_path):
    _write_class_folders(tmp_path / 'mixed', 'a', n=3, size=(10, 6))   # class a: 10 wide, 6 high
    _write_class_folders(tmp_path / 'mixed', 'b', n=3, size=(7, 9))    # class b: 7 wide, 9 high
    d = image_folder(tmp_path / 'mixed', size=(4, 5), valid_pct=0.34)
    for s in d:
        for xb, _ in s:
            assert xb.shape[1:] == (3, 4, 5)
    _write_class_folders(tmp_path / 'wide', 'ab', n=3, size=(10, 6))
    d = image_folder(tmp_path / 'wide', size=3, valid_pct=0.34)      # an int sets the shorter side
    xb, _ = next(iter(d.train))
    assert xb.shape[1:] == (3, 3, 5)  # 6x10 -> 3x5, the aspect ratio kept


@pytest.mark.parametrize('kw, exc, name', [
    (dict(bs=0), ValueError, 'bs'), (dict(valid_pct=1.0), ValueError, 'valid_pct'),
    (dict(seed=-2), ValueError, 'seed'), (dict(size=0), ValueError, 'size'),
    (dict(size=(2, 3, 4)), ValueError, 'size'), (dict(size='8'), TypeError, 'size'),
    (dict(size=(8, 0)), ValueError, 'size'), (dict(grayscale='yes'), TypeError, 'grayscale'),
    (dict(num_workers=-1), ValueError, 'num_workers'),
])
def test_image_folder_bad_args(tmp_path, kw, exc, name):
    _write_class_folders(tmp_path, 'ab', n=5)
    with pytest.raises(exc, match=f'`{name}`'):
        image_folder(tmp_path, **kw)


def test_image_folder_bad_paths(tmp_path):
    with pytest.raises(ValueError, match='`path`'):
        image_folder(tmp_path / 'missing')
    (tmp_path / 'f.txt').write_text('x')
    with pytest.raises(ValueError, match='`path`'):
        image_folder(tmp_path / 'f.txt')
    with pytest.raises(TypeError, match='`path`'):
        image_folder(3)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='`path`'):
        image_folder(tmp_path / 'empty')
    (tmp_path / 'noimg' / 'a').mkdir(parents=True)
    (tmp_path / 'noimg' / 'a' / 'notes.txt').write_text('x')
    with pytest.raises(ValueError, match='`path`'):
        image_folder(tmp_path / 'noimg')


def test_image_folder_too_few_images(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=1)  # 20% of 1 rounds to 0: nothing to validate on
    with pytest.raises(ValueError, match='`valid_pct`'):
        image_folder(tmp_path)


def test_image_folder_str_path(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=5)
    assert image_folder(str(tmp_path)).classes == ['a', 'b']


# ------------------------------------------------------------- image_folder: transforms, normalisation, clear errors

def _valid_by_file(d):
    "The validation images of `d` keyed by file name (the validation loader reads them in order)."
    files = [d.valid.dataset.dataset.samples[i][0] for i in d.valid.dataset.indices]
    return dict(zip(files, torch.cat([xb for xb, _ in d.valid])))


def test_image_folder_normalize_per_channel(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=5)
    plain = _valid_by_file(image_folder(tmp_path))
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    d = image_folder(tmp_path, normalize=(mean, std))
    assert d.normalize == (mean, std)
    m, s = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    for f, x in _valid_by_file(d).items():
        assert torch.allclose(x, (plain[f] - m) / s, atol=1e-6)  # (x - mean) / std, channel by channel


def test_image_folder_normalize_scalar_broadcasts_and_imagenet(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=5)
    assert image_folder(tmp_path, normalize=(0.5, 0.5)).normalize == ((0.5,) * 3, (0.5,) * 3)
    assert image_folder(tmp_path, grayscale=True, normalize=(0.5, 0.5)).normalize == ((0.5,), (0.5,))
    assert image_folder(tmp_path, normalize=imagenet_stats).normalize == imagenet_stats
    assert image_folder(tmp_path).normalize is None


@pytest.mark.parametrize('bad, exc', [
    ((0.5,), ValueError), ((0.5, 0.0), ValueError), (((0.1, 0.2), (1, 1)), ValueError),
    ('imagenet', TypeError), ((0.5, 'x'), TypeError), ((0.5, -1.0), ValueError)])
def test_image_folder_bad_normalize(tmp_path, bad, exc):
    _write_class_folders(tmp_path, 'ab', n=5)
    with pytest.raises(exc, match='`normalize`'):
        image_folder(tmp_path, normalize=bad)


def test_image_folder_augment_only_training(tmp_path):
    "Solid-colour images are unchanged by flips; a gradient image is not, so augmented training images differ from the file."
    for c in 'ab':
        (tmp_path / c).mkdir()
        for i in range(10):
            a = np.zeros((8, 8, 3), np.uint8); a[:, :, 0] = np.arange(8) * 30 + i  # left-to-right ramp
            Image.fromarray(a).save(tmp_path / c / f'{i}.png')
    plain, aug = image_folder(tmp_path, bs=20), image_folder(tmp_path, bs=20, augment=True)
    # the validation images are not augmented: equal to the files as read
    pv, av = _valid_by_file(plain), _valid_by_file(aug)
    assert pv.keys() == av.keys() and all(torch.equal(pv[f], av[f]) for f in pv)
    torch.manual_seed(0)
    xa = torch.cat([next(iter(aug.train))[0] for _ in range(3)])
    xp = next(iter(plain.train))[0]
    assert xa.shape[1:] == xp.shape[1:] == (3, 8, 8)    # augmentation keeps the size
    ramp_up = (xa[:, 0, 4, 1:] >= xa[:, 0, 4, :-1]).all(1)
    assert not ramp_up.all()                             # some were flipped (or shifted), i.e. changed
    assert (xp[:, 0, 4, 1:] > xp[:, 0, 4, :-1]).all()    # without augment, every training ramp is as written


def test_image_folder_user_transforms(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=5)
    calls = []
    def neg(x): calls.append(x.dtype); return 1 - x        # sees the float tensor in [0, 1]
    def half(x): return x * 0.5
    plain = _valid_by_file(image_folder(tmp_path))
    d = image_folder(tmp_path, item_tfms=[neg], aug_tfms=half, normalize=(0.25, 0.5))
    for f, x in _valid_by_file(d).items():
        assert torch.allclose(x, ((1 - plain[f]) - 0.25) / 0.5, atol=1e-6)  # item_tfms before normalize; no aug_tfms
    assert calls and set(calls) == {torch.float32}
    xt, yt = next(iter(d.train))
    for x, y in zip(xt, yt):
        _rgb_ref(y, 0.5 - x)  # undo normalise ((v - 0.25) / 0.5), half and neg: 1 - 2 (0.5 x + 0.25) = 0.5 - x


@pytest.mark.parametrize('bad', [3, [abs, 'x'], 'flip'])
def test_image_folder_bad_tfms(tmp_path, bad):
    _write_class_folders(tmp_path, 'ab', n=5)
    for name in ('item_tfms', 'aug_tfms'):
        with pytest.raises(TypeError, match=f'`{name}`'):
            image_folder(tmp_path, **{name: bad})
    with pytest.raises(TypeError, match='`augment`'):
        image_folder(tmp_path, augment='yes')


def test_image_folder_mixed_sizes_named_before_torch(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=3, size=(6, 5))
    Image.new('RGB', (7, 9)).save(tmp_path / 'b' / 'odd.png')
    with pytest.raises(ValueError, match=r"`size`.*5x6.*odd\.png.*9x7") as e:
        image_folder(tmp_path)
    assert 'stack' not in str(e.value)
    d = image_folder(tmp_path, size=(4, 4))  # one size for all: accepted
    assert all(xb.shape[1:] == (3, 4, 4) for s in d for xb, _ in s)


def test_image_folder_int_size_with_two_aspect_ratios(tmp_path):
    "An int `size` keeps each aspect ratio: files of two shapes still give two sizes, named up front."
    _write_class_folders(tmp_path, 'a', n=3, size=(10, 6))
    _write_class_folders(tmp_path, 'b', n=3, size=(6, 10))
    with pytest.raises(ValueError, match=r'`size`.*size=3.*3x5.*5x3'):
        image_folder(tmp_path, size=3)
    _write_class_folders(tmp_path / 'same', 'ab', n=3, size=(10, 6))
    _write_class_folders(tmp_path / 'same', 'b', n=2, size=(20, 12))  # same aspect ratio, twice as big
    d = image_folder(tmp_path / 'same', size=3)
    assert {tuple(xb.shape[1:]) for s in d for xb, _ in s} == {(3, 3, 5)}


def test_image_folder_transforms_that_change_size_caught_per_batch(tmp_path):
    _write_class_folders(tmp_path, 'ab', n=5)
    def crop_some(x): return x[:, :, :4] if x[0, 0, 0] > 0.1 else x  # class b (red 50/255) loses 2 columns, class a (10/255) keeps them
    d = image_folder(tmp_path, bs=10, item_tfms=crop_some)
    with pytest.raises(ValueError, match='`item_tfms`.*one shape'):
        for _ in d.train: pass


def test_image_folder_one_class_refused(tmp_path):
    _write_class_folders(tmp_path, 'a', n=5)
    with pytest.raises(ValueError, match="`path`.*at least 2 class folders.*'a'"):
        image_folder(tmp_path)
    _write_class_folders(tmp_path / 'tv' / 'train', 'a', n=3)
    _write_class_folders(tmp_path / 'tv' / 'valid', 'a', n=2)
    with pytest.raises(ValueError, match='at least 2 class folders'):
        image_folder(tmp_path / 'tv')


def test_image_folder_empty_and_file_paths(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='`path`.*no sub-folders'):
        image_folder(tmp_path / 'empty')
    _write_class_folders(tmp_path / 'half', 'a', n=2)
    (tmp_path / 'half' / 'b').mkdir()
    with pytest.raises(ValueError, match="`path`.*'b'.*no image"):
        image_folder(tmp_path / 'half')
    Image.new('RGB', (4, 4)).save(tmp_path / 'x.png')
    with pytest.raises(ValueError, match='`path` must be a directory.*not a file'):
        image_folder(tmp_path / 'x.png')


def test_image_folder_workers_give_the_same_batches(tmp_path):
    "The pipeline and the collate function pickle: worker processes give the batches the main process gives."
    _write_class_folders(tmp_path, 'ab', n=5)
    a = [xb for xb, _ in image_folder(tmp_path, bs=4, normalize=imagenet_stats).train]
    b = [xb for xb, _ in image_folder(tmp_path, bs=4, normalize=imagenet_stats, num_workers=1).train]
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
