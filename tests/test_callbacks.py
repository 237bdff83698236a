"Tests for the callbacks of cyclr.callback that a fit uses: EarlyStoppingCallback, CSVLogger, TensorBoardCallback -- with a real Learner on digits."
import csv
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import cyclr.callback as callback_mod
from cyclr.callback import Callback, CSVLogger, EarlyStoppingCallback, SaveModelCallback, TensorBoardCallback
from cyclr.data import DataLoaders, digits
from cyclr.learner import Learner
from cyclr.metrics import accuracy
from _helpers import cnn

torch.set_num_threads(1)
CE = nn.CrossEntropyLoss()


def data(): return digits(bs=32, n_train=128)


def scripted(values):
    "A metric whose value in epoch e is `values[e]` exactly, whatever the batch: an epoch table the test controls."
    def scripted(preds, targets): return torch.tensor(values[scripted.learn.epoch])
    return scripted


def learner(metrics=None, **kw):
    return Learner(data(), cnn(seed=0), CE, metrics=metrics, progress=False, **kw)


def learner_with(values, name='scripted'):
    m = scripted(values); m.__name__ = name
    learn = learner(metrics=[m]); m.learn = learn
    return learn


def first_stop(values, patience, min_delta, lower):
    "The epoch after which the rule stops, computed directly from its definition, or None."
    best, wait = None, 0
    for e, v in enumerate(values):
        if not np.isnan(v) and (best is None or (v < best - min_delta if lower else v > best + min_delta)): best, wait = v, 0
        else:
            wait += 1
            if wait >= patience: return e
    return None


# -------------------------------------------------------------------------------- EarlyStoppingCallback

@pytest.mark.parametrize('values, patience, min_delta, stop', [
    ([0.5, 0.6, 0.6, 0.55, 0.7, 0.8], 2, 0., 3),      # epochs 2 and 3 do not beat 0.6: stop after epoch 3
    ([0.5, 0.6, 0.6, 0.7, 0.8, 0.9], 2, 0., None),    # one flat epoch only: runs all 6
    ([0.5, 0.6, 0.61, 0.62, 0.9, 0.9], 2, 0.05, 3),   # +0.01 twice is not more than min_delta
    ([0.5, 0.4, 0.9, 0.9, 0.9, 0.9], 1, 0., 1),       # higher is better: 0.4 is worse
])
def test_early_stopping_stops_after_the_exact_epoch(values, patience, min_delta, stop):
    learn = learner_with(values)
    es = EarlyStoppingCallback('scripted', min_delta=min_delta, patience=patience)
    learn.fit(len(values), 1e-3, cbs=es)
    assert stop == first_stop(values, patience, min_delta, lower=False)  # the table states the rule
    ran = len(values) if stop is None else stop + 1
    assert len(learn.recorder.values) == ran and es.stopped_epoch == stop
    assert [v[2] for v in learn.recorder.values] == pytest.approx(values[:ran])
    assert not learn.in_fit  # after_fit ran


def test_early_stopping_lower_is_better_for_losses_and_errors():
    learn = learner_with([0.3, 0.2, 0.25, 0.1], name='error_rate')
    es = EarlyStoppingCallback('error_rate', patience=1)
    learn.fit(4, 1e-3, cbs=es)
    assert es.stopped_epoch == 2 and (es.best, es.best_epoch) == (pytest.approx(0.2), 1)


def test_early_stopping_on_the_real_valid_loss():
    "A diverging LR: the validation loss stops improving, and the stop is where the rule says from the recorded losses."
    learn = learner(opt_func=torch.optim.SGD)
    es = EarlyStoppingCallback(patience=2)
    learn.fit(12, 3.0, cbs=es)
    vl = [v[1] for v in learn.recorder.values]
    assert es.stopped_epoch == first_stop(vl, 2, 0., lower=True) == len(vl) - 1 < 11


def test_early_stopping_runs_after_the_table_loggers_and_checkpoints(tmp_path):
    learn = learner_with([0.5, 0.4, 0.3])
    learn.path = tmp_path
    log, save = CSVLogger(), SaveModelCallback(monitor='scripted', every_epoch=True)
    learn.fit(3, 1e-3, cbs=[EarlyStoppingCallback('scripted'), log, save])
    _, rows = log.read()
    assert [r[0] for r in rows] == [0, 1] and len(save.saved) == 2  # the stopping epoch was logged and saved


@pytest.mark.parametrize('kw, exc', [(dict(patience=0), ValueError), (dict(patience=1.5), TypeError),
                                     (dict(min_delta=-0.1), ValueError), (dict(monitor=3), TypeError)])
def test_early_stopping_bad_arguments(kw, exc):
    with pytest.raises(exc, match=f"`{next(iter(kw))}`"):
        EarlyStoppingCallback(**kw)


def test_early_stopping_unknown_monitor_or_no_validation_refused_before_training():
    learn = learner()
    w = [p.clone() for p in learn.model.parameters()]
    with pytest.raises(ValueError, match="`monitor` must be one of 'train_loss', 'valid_loss', got 'accuracy'"):
        learn.fit(1, cbs=EarlyStoppingCallback('accuracy'))
    assert all(torch.equal(a, b) for a, b in zip(w, learn.model.parameters())) and learn.recorder.values == []
    no_valid = Learner(DataLoaders(data().train), cnn(seed=0), CE, progress=False)
    with pytest.raises(ValueError, match='`monitor`.*validation'):
        no_valid.fit(1, cbs=EarlyStoppingCallback())
    no_valid.fit(2, cbs=EarlyStoppingCallback('train_loss', patience=5))  # train_loss needs no validation set


# -------------------------------------------------------------------------------- CSVLogger

def test_csv_rows_equal_the_recorder(tmp_path):
    learn = learner(metrics=accuracy, path=tmp_path)
    log = CSVLogger('hist.csv')
    learn.fit_one_cycle(3, 1e-2, cbs=log)
    with open(tmp_path / 'hist.csv', newline='') as f: rows = list(csv.reader(f))
    assert rows[0] == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time']
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    assert [[float(x) for x in r[1:-1]] for r in rows[1:]] == learn.recorder.values  # exact: written at full precision
    assert [float(r[-1]) for r in rows[1:]] == learn.recorder.times
    assert log.path == tmp_path / 'hist.csv' and log.read()[1][2][1:-1] == learn.recorder.values[2]


def test_csv_flushed_every_epoch(tmp_path):
    lines = []
    class Peek(Callback):
        order = 67  # after CSVLogger (65)
        def after_epoch(self, learn): lines.append((tmp_path / 'history.csv').read_text().count('\n'))
    learner(path=tmp_path).fit(3, 1e-3, cbs=[CSVLogger(), Peek()])
    assert lines == [2, 3, 4]  # header + one row per finished epoch, readable while the fit runs


def test_csv_append_and_replace(tmp_path):
    learn = learner(path=tmp_path)
    learn.fit(2, 1e-3, cbs=CSVLogger())
    learn.fit(1, 1e-3, cbs=CSVLogger(append=True))
    text = (tmp_path / 'history.csv').read_text().splitlines()
    assert len(text) == 1 + 2 + 1 and text[0].startswith('epoch,') and not text[3].startswith('epoch')
    learn.fit(1, 1e-3, cbs=CSVLogger())  # append=False: a fresh file
    assert len((tmp_path / 'history.csv').read_text().splitlines()) == 2


def test_csv_written_by_the_main_process_only(tmp_path, monkeypatch):
    monkeypatch.setattr(callback_mod, 'is_main_process', lambda: False)
    learner(path=tmp_path).fit(1, 1e-3, cbs=CSVLogger())
    assert not (tmp_path / 'history.csv').exists()


def test_csv_closed_after_a_failed_fit(tmp_path):
    class Boom(Callback):
        def after_epoch(self, learn): raise RuntimeError('boom')
    log = CSVLogger()
    with pytest.raises(RuntimeError, match='boom'):
        learner(path=tmp_path).fit(2, 1e-3, cbs=[log, Boom()])
    assert log._file is None and len((tmp_path / 'history.csv').read_text().splitlines()) == 1  # boom ran before the row


@pytest.mark.parametrize('kw, exc', [(dict(fname=''), ValueError), (dict(fname=3), TypeError), (dict(append='y'), TypeError)])
def test_csv_bad_arguments(kw, exc):
    with pytest.raises(exc, match=f"`{next(iter(kw))}`"):
        CSVLogger(**kw)


# -------------------------------------------------------------------------------- TensorBoardCallback

class FakeWriter:
    def __init__(self): self.scalars, self.flushes = {}, 0
    def add_scalar(self, tag, value, step): self.scalars.setdefault(tag, []).append((step, float(value)))
    def flush(self): self.flushes += 1


def test_tensorboard_logs_what_the_recorder_has():
    learn = learner(metrics=accuracy, splitter=lambda m: [list(m[:3].parameters()), list(m[3:].parameters())])
    w = FakeWriter()
    learn.fit_one_cycle(2, slice(1e-3, 1e-2), cbs=TensorBoardCallback(writer=w))
    r = learn.recorder
    assert w.scalars['train_loss/batch'] == [(i, pytest.approx(l)) for i, l in enumerate(r.losses)]
    for g in range(2): assert w.scalars[f'lr/group_{g}'] == [(s, pytest.approx(l[g])) for s, l in enumerate(r.group_lrs)]
    for k, name in enumerate(r.metric_names):
        assert w.scalars[f'epoch/{name}'] == [(e, pytest.approx(v[k])) for e, v in enumerate(r.values)]
    assert w.flushes == 2


def test_tensorboard_bad_writer():
    with pytest.raises(TypeError, match='`writer`'):
        TensorBoardCallback(writer=object())


@pytest.mark.skipif(importlib.util.find_spec('tensorboard') is not None, reason='tensorboard is installed')
def test_tensorboard_missing_is_a_clear_error():
    with pytest.raises(ImportError, match='pip install tensorboard'):
        TensorBoardCallback()


@pytest.mark.skipif(importlib.util.find_spec('tensorboard') is None, reason='tensorboard is not installed')
def test_tensorboard_writes_event_files(tmp_path):
    learner(path=tmp_path).fit(1, 1e-3, cbs=TensorBoardCallback(log_dir=tmp_path / 'tb'))
    assert any(p.name.startswith('events.out.tfevents') for p in (tmp_path / 'tb').iterdir())
