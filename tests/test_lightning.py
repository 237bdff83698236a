"cyclr inside a Lightning Trainer: the range test on a LightningModule restores bit for bit, and a cyclr schedule steps per batch."
import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from cyclr.data import digits
from cyclr.lightning import LRFinderCallback, lr_find_lightning
from cyclr.lr_find import lr_find
from cyclr.schedules import one_cycle
from _helpers import assert_same

torch.set_num_threads(1)


class Net(L.LightningModule):
    def __init__(self, seed=0, dict_loss=False):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(.2), nn.Linear(16, 10))
        self.dict_loss = dict_loss
    def forward(self, x): return self.net(x)
    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self(*batch[:-1]), batch[-1])
        return {'loss': loss} if self.dict_loss else loss
    def configure_optimizers(self): return torch.optim.Adam(self.parameters(), lr=1e-3)


def trainer(**kw):
    return L.Trainer(accelerator='cpu', logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kw)


def state(module, opt):
    return dict(model={k: v.clone() for k, v in module.state_dict().items()},
                opt={p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in enumerate(opt.state.values())},
                modes=[m.training for m in module.modules()], rng=torch.get_rng_state())


@pytest.mark.parametrize('dict_loss', [False, True])
def test_range_test_restores_a_trained_module_bit_for_bit(dict_loss):
    dls = digits(bs=32, n_train=256)
    module = Net(dict_loss=dict_loss)
    opt = module.configure_optimizers()
    for xb, yb in dls.train:  # some training first: Adam's moments, BN statistics
        out = module.training_step((xb, yb), 0)
        (out['loss'] if dict_loss else out).backward(); opt.step(); opt.zero_grad()
    module.eval()
    before = state(module, opt)
    res = lr_find_lightning(module, dls.train, opt, num_it=30, show_plot=False)
    assert_same(state(module, opt), before)
    assert len(res.lrs) >= 5 and res.stop_reason in ('completed', 'diverged')


def test_it_measures_what_a_plain_range_test_measures():
    "training_step is cross-entropy of forward: the same curve as cyclr's standalone test with that loss."
    dls = digits(bs=32, n_train=256)
    a, b = Net(), Net()
    ra = lr_find_lightning(a, dls.train, torch.optim.SGD(a.parameters(), lr=1e-3), num_it=25, show_plot=False, stop_div=False)
    rb = lr_find(b, dls.train, nn.CrossEntropyLoss(), torch.optim.SGD(b.parameters(), lr=1e-3), num_it=25, show_plot=False, stop_div=False)
    np.testing.assert_allclose(ra.raw_losses, rb.raw_losses, rtol=1e-6)


def test_callback_in_a_trainer_trains_from_the_restored_weights_at_the_suggestion():
    dls = digits(bs=64, n_train=512)
    module = Net()
    start = [p.detach().clone() for p in module.parameters()]
    seen = {}
    class First(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if 'w' not in seen: seen['w'], seen['lr'] = [p.detach().clone() for p in pl_module.parameters()], trainer.optimizers[0].param_groups[0]['lr']
    finder = LRFinderCallback(apply='valley', num_it=40)
    trainer(max_epochs=1, callbacks=[finder, First()]).fit(module, dls.train)
    assert all(torch.equal(a, b) for a, b in zip(start, seen['w']))
    assert seen['lr'] == finder.result.valley > 0


def test_accumulation_counts_optimizer_steps():
    dls = digits(bs=16, n_train=256)
    module = Net()
    steps = []
    opt = torch.optim.SGD(module.parameters(), lr=1e-3)
    opt.register_step_post_hook(lambda *a: steps.append(1))
    res = lr_find_lightning(module, dls.train, opt, grad_accum=2, num_it=10, show_plot=False, stop_div=False)
    assert len(res.lrs) == 10 and len(steps) == 10   # 20 batches, 10 optimizer steps, one LR per step


def test_schedule_stepped_by_lightning_equals_the_schedule():
    dls = digits(bs=64, n_train=512)
    class Scheduled(Net):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
            self.sched = one_cycle(0.1, self.trainer.estimated_stepping_batches)
            return {'optimizer': opt, 'lr_scheduler': {'scheduler': self.sched.to_torch(opt), 'interval': 'step'}}
        def on_train_batch_start(self, batch, batch_idx):
            g = self.trainer.optimizers[0].param_groups[0]
            self.seen = getattr(self, 'seen', []) + [(g['lr'], g['momentum'])]
    module = Scheduled()
    trainer(max_epochs=2).fit(module, dls.train)
    lrs, moms = np.array(module.seen).T
    it = np.arange(len(lrs))
    assert len(lrs) == 2 * len(dls.train)
    np.testing.assert_allclose(lrs, module.sched(it), rtol=1e-12)
    np.testing.assert_allclose(moms, module.sched.mom(it), rtol=1e-12)


def test_bad_input():
    dls = digits(bs=32, n_train=64)
    with pytest.raises(TypeError, match='`module` must be a'): lr_find_lightning(nn.Linear(2, 2), dls.train, None)
    module = Net()
    opt = module.configure_optimizers()
    with pytest.raises(TypeError, match='`step_fn` is not an argument'): lr_find_lightning(module, dls.train, opt, step_fn=print)
    with pytest.raises(TypeError, match='`apply` must be'): LRFinderCallback(apply=3)
