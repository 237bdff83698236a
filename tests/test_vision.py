"Tests for cyclr.vision: vision_learner (head, splitter, weights from a file or torch's cache, never a download), show_batch, and Learner.predict."
import warnings

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from cyclr.data import DataLoaders, image_folder, imagenet_stats
from cyclr.discriminative import resnet_splitter, split_params
from cyclr.learner import Learner
from cyclr.vision import cached_weights_file, head_name, load_body, show_batch, vision_learner, vision_splitter, weights_stats

torch.set_num_threads(1)

CLASSES = ('a', 'b', 'c')


def _folder(root, n=6, size=16, seed=0):
    "`n` random RGB images of `size` per class: class k's red channel is bright for k=0, mid for k=1, dark for k=2."
    rng = np.random.default_rng(seed)
    for k, c in enumerate(CLASSES):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            a[..., 0] = 230 - 100 * k
            Image.fromarray(a).save(root / c / f'{i}.png')
    return root


@pytest.fixture
def dls(tmp_path):
    return image_folder(_folder(tmp_path / 'img'), bs=6, valid_pct=0.34)


def _body(model, head):
    return {k: v for k, v in model.state_dict().items() if not k.startswith(head + '.')}


# ------------------------------------------------------------------------------------------- head and splitter

@pytest.mark.parametrize('arch, head', [('resnet18', 'fc'), ('convnext_tiny', 'classifier.2'), ('efficientnet_b0', 'classifier.1'),
                                        ('mobilenet_v3_small', 'classifier.3'), ('vit_b_16', 'heads.head')])
def test_head_name_and_splitter_of_torchvision_models(arch, head):
    m = torchvision.models.get_model(arch, weights=None)
    assert head_name(m) == head and m.get_submodule(head).out_features == 1000
    groups = split_params(m, vision_splitter)  # every parameter exactly once, or it raises
    block = head.split('.')[0]
    assert [id(p) for p in groups[-1]] == [id(p) for p in getattr(m, block).parameters()]  # the head block is the last group
    assert len(groups) == 3
    owner = {id(p): n.rsplit('.', 1)[0] for n, p in m.named_parameters()}
    g0, g1 = {owner[id(p)] for p in groups[0]}, {owner[id(p)] for p in groups[1]}
    assert not g0 & g1  # the cut is between modules: no layer has its weight in one group and its bias in the other


def test_resnet_splitter_for_resnets():
    m = torchvision.models.resnet34(weights=None)
    assert [[id(p) for p in g] for g in vision_splitter(m)] == [[id(p) for p in g] for g in resnet_splitter(m)]


def test_generic_split_halves_the_depth():
    m = torchvision.models.convnext_tiny(weights=None)
    n0, n1, _ = (len(g) for g in vision_splitter(m))
    assert abs(n0 - n1) <= 4  # halves of the body's tensors, up to the module boundary


def test_head_name_refuses_a_model_without_linear():
    with pytest.raises(ValueError, match='`model`.*nn.Linear'):
        head_name(torchvision.models.squeezenet1_0(weights=None))
    with pytest.raises(TypeError, match='`model`'):
        head_name('resnet18')


# ------------------------------------------------------------------------------------------- vision_learner

def test_random_weights_new_head_nothing_frozen(dls):
    learn = vision_learner(dls, 'resnet18', progress=False)
    assert isinstance(learn, Learner) and learn.model.fc.out_features == dls.c == 3
    assert all(p.requires_grad for p in learn.model.parameters())  # a random body is not frozen
    assert len(learn.opt.param_groups) == 3 and isinstance(learn.loss_func, nn.CrossEntropyLoss)
    assert vision_learner(dls, torchvision.models.resnet18, n_out=7, progress=False).model.fc.out_features == 7


def test_forward_through_new_head(dls):
    learn = vision_learner(dls, 'mobilenet_v3_small', progress=False)
    xb, _ = next(iter(dls.train))
    assert learn.model.eval()(xb).shape == (len(xb), 3)


def test_pretrained_path_loads_body_new_head_frozen(dls, tmp_path):
    torch.manual_seed(0)
    src = torchvision.models.resnet18(weights=None, num_classes=5)  # another task's head: 5 classes
    torch.save(src.state_dict(), tmp_path / 'pre.pth')
    torch.manual_seed(1)
    learn = vision_learner(dls, 'resnet18', pretrained_path=tmp_path / 'pre.pth', progress=False)
    got, want = _body(learn.model, 'fc'), _body(src, 'fc')
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)  # weights and BN statistics
    assert learn.model.fc.out_features == 3
    # frozen like fastai: the body but for its BatchNorm layers; the head trains
    assert not learn.model.conv1.weight.requires_grad and not learn.model.layer4[1].conv2.weight.requires_grad
    assert learn.model.bn1.weight.requires_grad and learn.model.fc.weight.requires_grad


def test_pretrained_path_accepts_checkpoints_wrapped_dicts_and_ddp_prefixes(dls, tmp_path):
    pre = vision_learner(dls, 'resnet18', progress=False, path=tmp_path)
    ckpt = pre.save('pre')  # a cyclr checkpoint
    sd = pre.model.state_dict()
    torch.save({'model': sd}, tmp_path / 'wrapped.pth')
    torch.save({'module.' + k: v for k, v in sd.items()}, tmp_path / 'ddp.pth')
    for f in (ckpt, tmp_path / 'wrapped.pth', tmp_path / 'ddp.pth'):
        learn = vision_learner(dls, 'resnet18', n_out=2, pretrained_path=f, progress=False)
        assert torch.equal(learn.model.layer3[0].conv1.weight, sd['layer3.0.conv1.weight']), f


def test_pretrained_path_that_does_not_fit(dls, tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / 'r18.pth')
    with pytest.raises(ValueError, match='`pretrained_path`.*does not fit ResNet.*missing layer1.2.*and 92 more'):
        vision_learner(dls, 'resnet34', pretrained_path=tmp_path / 'r18.pth')
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd['layer1.0.conv1.weight'] = torch.zeros(64, 64, 1, 1)
    torch.save(sd, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match=r'`pretrained_path`.*layer1.0.conv1.weight \(64, 64, 1, 1\).*\(64, 64, 3, 3\)'):
        vision_learner(dls, 'resnet18', pretrained_path=tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='`pretrained_path` must be an existing file'):
        vision_learner(dls, 'resnet18', pretrained_path=tmp_path / 'missing.pth')
    torch.save([1, 2], tmp_path / 'list.pth')
    with pytest.raises(ValueError, match='`pretrained_path`.*state_dict'):
        vision_learner(dls, 'resnet18', pretrained_path=tmp_path / 'list.pth')


def test_load_body_returns_loaded_names(tmp_path):
    m = torchvision.models.resnet18(weights=None)
    torch.save(m.state_dict(), tmp_path / 'm.pth')
    names = load_body(torchvision.models.resnet18(weights=None, num_classes=4), tmp_path / 'm.pth')
    assert names == sorted(k for k in m.state_dict() if not k.startswith('fc.'))


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    "torch's cache in `tmp_path`, and any download attempt an error."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    def refuse(*a, **k): raise AssertionError('tried to download')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', refuse)
    return tmp_path / 'torch_home'


def test_weights_enum_not_cached_is_refused_without_download(dls, no_download):
    W = torchvision.models.MobileNet_V3_Small_Weights
    for w in (W.IMAGENET1K_V1, 'IMAGENET1K_V1', 'DEFAULT', 'MobileNet_V3_Small_Weights.IMAGENET1K_V1'):
        with pytest.raises(FileNotFoundError, match=r'`weights`.*not on disk.*never downloads.*mobilenet_v3_small-.*\.pth.*`pretrained_path`'):
            vision_learner(dls, 'mobilenet_v3_small', weights=w)
    assert str(cached_weights_file(W.IMAGENET1K_V1)).startswith(str(no_download))


def test_weights_enum_from_the_cache(dls, no_download):
    W = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    file = cached_weights_file(W)
    file.parent.mkdir(parents=True)
    torch.manual_seed(3)
    src = torchvision.models.mobilenet_v3_small(weights=None)  # stands in for the ImageNet weights: 1000 classes
    torch.save(src.state_dict(), file)
    norm = image_folder(dls.train.dataset.dataset.root, bs=6, valid_pct=0.34, normalize=imagenet_stats)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the data is normalised as the weights expect: no warning
        learn = vision_learner(norm, 'mobilenet_v3_small', weights=W, progress=False)
    got, want = _body(learn.model, 'classifier.3'), _body(src, 'classifier.3')
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert learn.model.classifier[3].out_features == 3
    assert not learn.model.features[1].block[0][0].weight.requires_grad  # frozen body
    assert learn.model.classifier[0].weight.requires_grad                 # the head block trains
    with pytest.warns(UserWarning, match='normalised with mean'):
        vision_learner(dls, 'mobilenet_v3_small', weights='DEFAULT', progress=False)  # dls not normalised


def test_weights_stats_are_imagenets():
    assert weights_stats(torchvision.models.ResNet18_Weights.DEFAULT) == imagenet_stats
    assert weights_stats(torchvision.models.ViT_B_16_Weights.DEFAULT) == imagenet_stats


@pytest.mark.parametrize('kw, exc, match', [
    (dict(arch='resnet19'), ValueError, "`arch`.*resnet18.*got 'resnet19'"),
    (dict(arch=18), TypeError, '`arch`'),
    (dict(weights='IMAGENET1K_V9'), ValueError, '`weights`.*IMAGENET1K_V1'),
    (dict(weights=torchvision.models.ResNet34_Weights.DEFAULT), ValueError, '`weights`.*ResNet18_Weights'),
    (dict(weights=True), TypeError, '`weights`'),
    (dict(n_out=0), ValueError, '`n_out`'),
    (dict(n_out=2.0), TypeError, '`n_out`'),
    (dict(weights='DEFAULT', pretrained_path='x.pth'), ValueError, '`weights` or `pretrained_path`'),
    (dict(pretrained_path=3), TypeError, '`pretrained_path`'),
])
def test_bad_arguments(dls, no_download, kw, exc, match):
    with pytest.raises(exc, match=match):
        vision_learner(dls, **{'arch': 'resnet18', **kw})


def test_n_out_needed_without_classes(dls):
    with pytest.raises(ValueError, match='`n_out`'):
        vision_learner((dls.train, dls.valid), 'resnet18')
    assert vision_learner((dls.train, dls.valid), 'resnet18', n_out=3, progress=False).model.fc.out_features == 3


def test_builder_without_weights_argument(dls):
    def tiny(): return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    learn = vision_learner(dls, tiny, progress=False)
    assert learn.model[-1].out_features == 3
    with pytest.raises(ValueError, match='`weights`'):
        vision_learner(dls, tiny, weights='DEFAULT')


def test_frozen_fit_trains_head_and_bn_only(dls, tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / 'pre.pth')
    learn = vision_learner(dls, 'resnet18', pretrained_path=tmp_path / 'pre.pth', progress=False)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit_one_cycle(1, 1e-2)
    after = learn.model.state_dict()
    assert torch.equal(after['layer2.0.conv1.weight'], before['layer2.0.conv1.weight'])  # frozen
    assert not torch.equal(after['layer2.0.bn1.weight'], before['layer2.0.bn1.weight'])  # BatchNorm trains
    assert not torch.equal(after['fc.weight'], before['fc.weight'])
    learn.unfreeze()
    learn.fit_one_cycle(1, slice(1e-4, 1e-2))
    assert not torch.equal(learn.model.state_dict()['layer2.0.conv1.weight'], before['layer2.0.conv1.weight'])
    lrs = learn.recorder.group_lrs[-1]
    assert lrs[0] < lrs[1] < lrs[2]  # slice(lo, hi): geometric over the three groups


# ------------------------------------------------------------------------------------------- show_batch

def test_show_batch_draws_once_denormalised_and_moves_nothing(tmp_path):
    d = image_folder(_folder(tmp_path / 'img'), bs=4, valid_pct=0.34, normalize=imagenet_stats, augment=True)
    plain = image_folder(tmp_path / 'img', bs=4, valid_pct=0.34)
    plt.close('all')
    g0, t0 = d.train.generator.get_state(), torch.get_rng_state()
    assert show_batch(d, n=6, valid=True) is None  # nothing returned: a notebook shows the figure once
    assert torch.equal(torch.get_rng_state(), t0)
    assert plt.get_fignums() and len(plt.get_fignums()) == 1
    axs = [a for a in plt.gcf().axes if a.images]
    assert len(axs) == 6
    xv, yv = next(iter(plain.valid))
    for ax, x, y in zip(axs, xv, yv):
        assert ax.get_title() == CLASSES[y]
        np.testing.assert_allclose(ax.images[0].get_array(), x.permute(1, 2, 0).numpy(), atol=1e-5)  # normalisation undone
    g0, t0 = d.train.generator.get_state(), torch.get_rng_state()  # (reading plain.valid above drew a seed)
    show_batch(d, n=5)  # the training loader, augmented
    assert torch.equal(d.train.generator.get_state(), g0) and torch.equal(torch.get_rng_state(), t0)
    plt.close('all')


def test_show_batch_more_than_one_batch_and_grayscale(tmp_path):
    d = image_folder(_folder(tmp_path / 'img'), bs=4, valid_pct=0.34, grayscale=True)
    plt.close('all')
    show_batch(d, n=10, ncols=5)
    axs = [a for a in plt.gcf().axes if a.images]
    assert len(axs) == 10 and axs[0].images[0].get_array().ndim == 2 and axs[0].images[0].get_cmap().name == 'gray'
    plt.close('all')


def test_show_batch_bad_arguments(dls):
    with pytest.raises(ValueError, match='`n`'): show_batch(dls, n=0)
    with pytest.raises(TypeError, match='`dls`'): show_batch([dls.train])
    with pytest.raises(ValueError, match='`valid`'): show_batch(DataLoaders(dls.train), valid=True)


# ------------------------------------------------------------------------------------------- Learner.predict
# `Learner.predict` (cyclr.training.Inference): these tests skip only while it does not exist.

needs_predict = pytest.mark.skipif(not hasattr(Learner, 'predict'), reason='Learner.predict does not exist yet')


@needs_predict
def test_predict_matches_get_preds_and_restores_mode(dls):
    torch.manual_seed(0)
    learn = vision_learner(dls, 'resnet18', progress=False)
    learn.model.train()
    preds, _ = learn.get_preds()
    x0, _ = dls.valid.dataset[0]
    idx, probs = learn.predict(x0)  # no batch dimension
    assert learn.model.training and all(m.training for m in learn.model.modules())  # the mode is put back
    torch.testing.assert_close(probs, preds[0].softmax(0), rtol=1e-5, atol=1e-6)
    assert idx == int(preds[0].argmax()) and isinstance(idx, int) and probs.shape == (3,)
    assert abs(float(probs.sum()) - 1) < 1e-6


@needs_predict
def test_predict_raw_output_for_a_regression():
    from cyclr.data import DataLoaders as DL
    x = torch.randn(16, 4); y = x.sum(1, keepdim=True)
    ds = torch.utils.data.TensorDataset(x, y)
    learn = Learner(DL.from_dsets(ds, ds, bs=8), nn.Linear(4, 1), nn.MSELoss(), progress=False)
    out = learn.predict(x[0])
    with torch.no_grad(): ref = learn.model(x[:1])[0]
    assert torch.equal(out, ref) and out.shape == (1,)


@needs_predict
def test_predict_bad_item(dls):
    learn = vision_learner(dls, 'resnet18', progress=False)
    for bad in (3, [3]):
        with pytest.raises(TypeError, match='`item`'):
            learn.predict(bad)
    with pytest.raises((TypeError, ValueError), match='`item`'):  # TypeError for tensors only; ValueError if files are taken
        learn.predict('no-such-file.png')


@needs_predict
def test_predict_from_a_file_uses_the_validation_transforms(tmp_path):
    d = image_folder(_folder(tmp_path / 'img'), bs=4, valid_pct=0.34, normalize=imagenet_stats, augment=True)
    torch.manual_seed(0)
    learn = vision_learner(d, 'resnet18', progress=False)
    f, _ = d.valid.dataset.dataset.samples[d.valid.dataset.indices[0]]
    x0, _ = d.valid.dataset[0]
    i_file, p_file = learn.predict(f)
    i_t, p_t = learn.predict(x0)
    assert i_file == i_t and torch.equal(p_file, p_t)  # the file goes through the validation (unaugmented) pipeline
