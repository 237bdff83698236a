"""Headless tests for cyclr.widgets: no browser, no kernel, matplotlib's Agg renderer.

The widgets are built in plain Python and driven by setting widget values, as the browser would. References are
independent of the code under test: the policy functions of cyclr.schedules called directly with literal arguments,
`eval` of the code line, and the PNG bytes / line data read back from the figure."""
import inspect
import math
from collections import namedtuple
from types import SimpleNamespace

import ipywidgets as widgets
import numpy as np
import pytest
import torch

import cyclr.schedules as S
from cyclr.policies import POLICIES
from cyclr.schedules import constant, cosine, cyclic, flat_cos, one_cycle, sgdr, step_decay
from cyclr.widgets import LRPicker, ScheduleExplorer, lr_find_picker, schedule_explorer

torch.set_num_threads(1)  # shared machine

N = 1000
IT = np.arange(N)


def labels(ex):
    "The descriptions of the parameter controls on screen, in order."
    return [w.description for w in ex.params_box.children]


def same_schedule(a, b, n=N, exact_repr=False):
    "Equal to the last bit at every step, momentum included, with equal parameters (and, if asked, the same repr)."
    it = np.arange(n + 5)  # a few steps past the end: the final value holds in both
    np.testing.assert_array_equal(a(it), b(it))
    assert a.has_mom == b.has_mom
    if a.has_mom: np.testing.assert_array_equal(a.mom(it), b.mom(it))
    assert a.name == b.name and a.params == b.params
    if exact_repr: assert repr(a) == repr(b)


def evaluated(code):
    return eval(code, vars(S))


# -- the explorer: structure ---------------------------------------------------------------------------------------

def test_every_policy_is_offered_and_described():
    ex = schedule_explorer()
    assert set(ex.policy.options) == set(POLICIES)
    for name, pol in POLICIES.items():
        sig = inspect.signature(pol.make).parameters
        assert {p.name for p in pol.params} <= set(sig), name


def test_widgets_restate_nothing_of_the_registry():
    "Parameters, defaults, help texts and Learner method names live in cyclr.policies only."
    import cyclr.widgets
    src = inspect.getsource(cyclr.widgets)
    for pol in POLICIES.values():
        if pol.learn_method: assert f"'{pol.learn_method}'" not in src
        for p in pol.params:
            if p.help: assert p.help not in src, p.help
    assert 'Param(' not in src and 'POLICY_PARAMS' not in src


def test_controls_kinds_follow_the_parameter_type():
    ex = schedule_explorer('one_cycle')
    c = ex.controls
    assert isinstance(c['lr_max'], widgets.FloatLogSlider) and isinstance(c['div'], widgets.FloatLogSlider)
    assert isinstance(c['pct_start'], widgets.FloatSlider) and isinstance(c['moms'], widgets.FloatRangeSlider)
    assert isinstance(c['three_phase'], widgets.Checkbox) and isinstance(c['anneal'], widgets.Dropdown)
    ex.policy.value = 'cyclic'
    c = ex.controls
    assert isinstance(c['base_lr'], widgets.FloatLogSlider) and isinstance(c['max_lr'], widgets.FloatLogSlider)
    assert isinstance(c['step_size'], widgets.IntSlider) and isinstance(c['mode'], widgets.Dropdown)
    ex.policy.value = 'sgdr'
    assert isinstance(ex.controls['T_0'], widgets.IntSlider) and isinstance(ex.controls['eta_min'], widgets.FloatLogSlider)
    assert isinstance(ex.steps, widgets.IntSlider) and ex.steps.description == 'total_steps'


def test_policy_switch_swaps_the_sliders_and_keeps_values():
    ex = schedule_explorer('one_cycle')
    assert labels(ex) == ['lr_max', 'pct_start', 'div', 'div_final', 'moms', 'three_phase', 'anneal']
    ex.controls['pct_start'].value = 0.4
    ex.policy.value = 'cyclic'
    assert labels(ex) == ['base_lr', 'max_lr', 'step_size', 'mode', 'gamma']
    assert ex.schedule.name == 'cyclic' and ex.code.startswith('cyclic(')
    ex.policy.value = 'constant'
    assert labels(ex) == ['lr']
    ex.policy.value = 'one_cycle'
    assert ex.controls['pct_start'].value == 0.4  # each policy's controls are kept
    ex.controls['lr_max'].value = 0.02
    ex.policy.value = 'cosine'  # lr_max is one slider shared by the policies that have it
    assert ex.controls['lr_max'].value == 0.02 and ex.schedule.params['lr_max'] == 0.02


# -- the explorer: plotted data equals the schedule ---------------------------------------------------------------

def test_initial_plot_is_the_policy():
    ex = schedule_explorer('one_cycle', total_steps=N, lr_max=1e-2, pct_start=0.3)
    ref = one_cycle(lr_max=1e-2, total_steps=N, pct_start=0.3, div=25., div_final=1e5, moms=(0.95, 0.85, 0.95))
    x, y = ex.lr_line.get_data()
    np.testing.assert_array_equal(x, IT)
    np.testing.assert_array_equal(y, ref(IT))
    np.testing.assert_array_equal(ex.mom_line.get_ydata(), ref.mom(IT))
    same_schedule(ex.schedule, ref)


def test_slider_change_redraws_in_place_with_the_new_schedule():
    ex = schedule_explorer('one_cycle', total_steps=N)
    fig, lines, img, png, code = ex.figure, (ex.lr_line, ex.mom_line), ex.image, ex.image.value, ex.code
    ex.controls['lr_max'].value = 0.02
    ref = one_cycle(0.02, N)
    np.testing.assert_array_equal(ex.lr_line.get_ydata(), ref(IT))
    np.testing.assert_array_equal(ex.mom_line.get_ydata(), ref.mom(IT))
    assert ex.image.value != png and ex.image.value[:8] == b'\x89PNG\r\n\x1a\n'
    assert ex.code != code and 'lr_max=0.02' in ex.code
    # in place: the same figure, axes, lines and Image widget; nothing accumulates
    assert ex.figure is fig and (ex.lr_line, ex.mom_line) == lines and ex.image is img
    for v in (0.01, 0.005, 0.03): ex.controls['lr_max'].value = v
    assert len(ex.figure.axes) == 2 and len(ex.ax_lr.lines) == 2 and len(ex.ax_mom.lines) == 2
    assert len(ex.ax_mom.texts) == 1 and len(ex.children) == 3
    assert (ex.image.layout.width, ex.image.layout.height) == ('600px', '400px')


def test_each_parameter_reaches_the_schedule():
    "Moving any one control changes the plotted curve to that policy called with the new value."
    ex = schedule_explorer('one_cycle', total_steps=N)
    base = dict(lr_max=3e-3, total_steps=N, pct_start=0.25, div=25, div_final=1e5, moms=(0.95, 0.85, 0.95))
    changes = [('pct_start', 0.5, {}), ('div', 10.0, {}), ('div_final', 1e3, {}), ('moms', (0.9, 0.8, 0.9), {}),
               ('three_phase', True, {'pct_start': 0.3}), ('anneal', 'linear', {})]
    for name, value, extra in changes:
        ex = schedule_explorer('one_cycle', total_steps=N, **extra)
        ex.set(**{name: value})
        ref = one_cycle(**{**base, **extra, name: value})
        np.testing.assert_array_equal(ex.lr_line.get_ydata(), ref(IT), err_msg=name)
        np.testing.assert_array_equal(ex.mom_line.get_ydata(), ref.mom(IT), err_msg=name)
        same_schedule(ex.schedule, ref)


def test_total_steps_slider():
    ex = schedule_explorer('cyclic', total_steps=N)
    assert ex.controls['step_size'].max == N
    ex.steps.value = 2 * N
    x, y = ex.lr_line.get_data()
    assert len(x) == 2 * N and ex.controls['step_size'].max == 2 * N  # step-count ranges follow the run
    np.testing.assert_array_equal(y, cyclic(1e-4, 1e-2, step_size=N // 6, total_steps=2 * N)(np.arange(2 * N)))
    assert ex.ax_lr.get_xlim() == (0, 2 * N - 1)


def test_endless_policy_follows_total_steps():
    ex = schedule_explorer('sgdr', total_steps=N)
    png = ex.image.value
    ex.steps.value = 3 * N  # sgdr has no total_steps argument: only the plotted range changes
    assert ex.image.value != png and len(ex.lr_line.get_xdata()) == 3 * N and 'total_steps' not in ex.code
    np.testing.assert_array_equal(ex.lr_line.get_ydata(), sgdr(3e-3, N // 7, T_mult=2., eta_min=1e-6)(np.arange(3 * N)))
    assert 'endless' in ex.message.value


def test_no_redraw_when_the_arguments_do_not_change():
    "A browser snapping a slider to its step grid writes back a value that tidies to the same argument."
    ex = schedule_explorer('one_cycle')
    renders = []
    ex.image.observe(lambda c: renders.append(1), 'value')
    ex.controls['lr_max'].value = 10 ** -2.5229  # 0.0029999..: still lr_max=3e-3
    ex.controls['div'].value = 10 ** 1.3979
    assert renders == [] and 'lr_max=3e-3' in ex.code
    ex.controls['lr_max'].value = 0.004
    assert len(renders) == 1


@pytest.mark.parametrize('policy', list(POLICIES))
def test_code_line_evaluates_to_the_identical_schedule(policy):
    ex = schedule_explorer(policy, total_steps=N)
    assert ex.code.startswith(policy + '(')
    same_schedule(evaluated(ex.code), ex.schedule, exact_repr=True)
    # and after moving every control to random positions
    rng = np.random.default_rng(sum(map(ord, policy)))
    valid = 0
    for _ in range(12):
        values = {}
        for p in POLICIES[policy].params:
            w = ex.controls[p.name]
            if p.kind == 'log': values[p.name] = 10 ** rng.uniform(w.min, w.max)
            elif p.kind == 'moms':
                lo, hi = sorted(rng.uniform(w.min, w.max, 2))
                values[p.name] = (hi, lo, hi)
            elif p.kind == 'int': values[p.name] = int(rng.integers(w.min, w.max + 1))
            elif p.kind == 'float': values[p.name] = rng.uniform(w.min, w.max)
            elif p.kind == 'choice': values[p.name] = p.options[rng.integers(len(p.options))][1]
            elif p.kind == 'bool': values[p.name] = bool(rng.integers(2))
        ex.set(**values)  # one redraw for all of them
        if ex.error is None:
            valid += 1
            same_schedule(evaluated(ex.code), ex.schedule, exact_repr=True)
            np.testing.assert_array_equal(ex.lr_line.get_ydata(), evaluated(ex.code)(IT))
    assert valid >= 3  # (some random combinations are refused, e.g. base_lr > max_lr)


def test_code_line_is_tidy():
    ex = schedule_explorer('one_cycle', total_steps=N)
    ex.controls['lr_max'].value = 10 ** -2.37  # a position a browser drag gives
    assert ex.schedule.params['lr_max'] == 0.00427 and 'lr_max=0.00427' in ex.code
    assert ex.code == ('one_cycle(lr_max=0.00427, total_steps=1000, pct_start=0.25, div=25.0, div_final=1e5, '
                       'moms=(0.95, 0.85, 0.95), three_phase=False)')
    assert 'one_cycle(lr_max=0.00427' in ex.code_box.value  # shown in the UI


def test_inactive_parameter_greyed_and_left_out():
    ex = schedule_explorer('cyclic')
    assert ex.controls['gamma'].disabled and 'gamma' not in ex.code
    ex.controls['mode'].value = 'exp_range'
    assert not ex.controls['gamma'].disabled and 'gamma=0.999' in ex.code
    ref = cyclic(1e-4, 1e-2, step_size=N // 6, mode='exp_range', gamma=0.999, total_steps=N)
    np.testing.assert_array_equal(ex.lr_line.get_ydata(), ref(IT))


def test_anneal_default_and_choice():
    ex = schedule_explorer('one_cycle', anneal='linear')
    assert ex.controls['anneal'].value == 'linear' and "anneal='linear'" in ex.code
    ex.controls['anneal'].value = 'default'
    assert 'anneal' not in ex.code and ex.schedule.params.get('anneal') is None


def test_other_policies_plot_their_formula():
    cases = [('cosine', dict(lr_max=1e-2, eta_min=1e-4), cosine(1e-2, N, eta_min=1e-4)),
             ('sgdr', dict(lr_max=1e-2, T_0=100, T_mult=2., eta_min=1e-5), sgdr(1e-2, 100, T_mult=2, eta_min=1e-5)),
             ('step_decay', dict(lr=0.1, step_size=300, gamma=0.5), step_decay(0.1, step_size=300, gamma=0.5, total_steps=N)),
             ('flat_cos', dict(lr_max=1e-2, pct_start=0.6), flat_cos(1e-2, N, pct_start=0.6)),
             ('constant', dict(lr=3e-4), constant(3e-4, total_steps=N))]
    for policy, kw, ref in cases:
        ex = schedule_explorer(policy, total_steps=N, **kw)
        np.testing.assert_array_equal(ex.lr_line.get_ydata(), ref(IT), err_msg=policy)
        assert len(ex.mom_line.get_xdata()) == 0 and len(ex.mom_line.get_ydata()) == 0  # no momentum drawn
        assert 'leaves momentum alone' in ex.ax_mom.texts[0].get_text()


# -- momentum panel, log scale, comparison --------------------------------------------------------------------------

def test_momentum_panel_greyed_when_none():
    ex = schedule_explorer('one_cycle')
    white = ex.ax_mom.get_facecolor()
    ex.policy.value = 'cosine'
    assert ex.ax_mom.get_facecolor() != white and ex.ax_mom.texts[0].get_text() == 'cosine leaves momentum alone'
    assert not any(t.get_visible() and t.get_text() for t in ex.ax_mom.get_yticklabels())
    ex.policy.value = 'one_cycle'
    assert ex.ax_mom.get_facecolor() == white and ex.ax_mom.texts[0].get_text() == ''
    lo, hi = ex.ax_mom.get_ylim()
    assert lo <= 0.85 < 0.95 <= hi and hi - lo < 0.2  # autoscaled to the momentum again, not stuck at (0, 1)


def test_greyed_panel_is_in_the_picture():
    "What the user sees: the PNG's momentum panel is grey for a policy without momentum, white with one."
    from PIL import Image
    import io
    def panel_pixel(ex):
        box = ex.ax_mom.get_window_extent()  # display pixels, origin bottom-left
        x, y = int(box.x0 + 0.25 * box.width), int(box.y0 + 0.8 * box.height)
        img = np.asarray(Image.open(io.BytesIO(ex.image.value)).convert('RGB'))
        return img[img.shape[0] - 1 - y, x]
    ex = schedule_explorer('cosine')
    grey = panel_pixel(ex)
    assert np.all(grey < 245) and np.ptp(grey) == 0
    ex.policy.value = 'one_cycle'
    assert np.all(panel_pixel(ex) == 255)


def test_log_toggle_changes_the_axis_scale():
    ex = schedule_explorer('one_cycle')
    png = ex.image.value
    assert ex.ax_lr.get_yscale() == 'linear'
    ex.log_scale.value = True
    assert ex.ax_lr.get_yscale() == 'log' and ex.image.value != png
    lo, hi = ex.ax_lr.get_ylim()
    assert lo <= ex.schedule(IT).min() and hi >= ex.schedule(IT).max()
    ex.log_scale.value = False
    assert ex.ax_lr.get_yscale() == 'linear'


def test_compare_with_another_policy():
    ex = schedule_explorer('one_cycle', compare='cosine')
    ref = cosine(3e-3, N, eta_min=1e-6)
    np.testing.assert_array_equal(ex.ref_lr_line.get_ydata(), ref(IT))
    assert [t.get_text() for t in ex.ax_lr.get_legend().get_texts()] == ['one_cycle', 'cosine']
    ex.compare.value = 'none'
    assert len(ex.ref_lr_line.get_ydata()) == 0 and len(ex.ax_lr.get_legend().get_texts()) == 1
    ex.compare.value = 'one_cycle'  # the policy on screen: nothing to compare
    assert len(ex.ref_lr_line.get_ydata()) == 0


def test_pin_freezes_the_current_curve():
    ex = schedule_explorer('one_cycle', lr_max=1e-2)
    ex.pin()
    ex.controls['lr_max'].value = 1e-3
    ex.controls['pct_start'].value = 0.5
    np.testing.assert_array_equal(ex.ref_lr_line.get_ydata(), one_cycle(1e-2, N)(IT))
    np.testing.assert_array_equal(ex.ref_mom_line.get_ydata(), one_cycle(1e-2, N).mom(IT))
    np.testing.assert_array_equal(ex.lr_line.get_ydata(), one_cycle(1e-3, N, pct_start=0.5)(IT))
    assert ex.compare.value == 'pinned' and 'pinned: one_cycle' in [t.get_text() for t in ex.ax_lr.get_legend().get_texts()]
    ex.pin_button.click()  # the button pins the current curve
    np.testing.assert_array_equal(ex.ref_lr_line.get_ydata(), one_cycle(1e-3, N, pct_start=0.5)(IT))
    assert [o[1] for o in ex.compare.options].count('pinned') == 1


def test_compare_with_a_given_schedule():
    ex = schedule_explorer('cosine', compare=sgdr(1e-2, 200))
    np.testing.assert_array_equal(ex.ref_lr_line.get_ydata(), sgdr(1e-2, 200)(IT))


# -- invalid combinations and bad arguments -------------------------------------------------------------------------

def test_invalid_combination_shows_message_and_keeps_last_good_plot():
    ex = schedule_explorer('cyclic')
    good, png, code, y = ex.schedule, ex.image.value, ex.code, ex.lr_line.get_ydata().copy()
    ex.controls['base_lr'].value = 0.5  # above max_lr = 0.01: cyclic refuses it
    assert 'base_lr' in ex.error and 'max_lr' in ex.error
    assert '<code>base_lr</code>' in ex.message.value and 'last valid schedule' in ex.message.value
    assert ex.schedule is good and ex.image.value == png and ex.code == code
    np.testing.assert_array_equal(ex.lr_line.get_ydata(), y)
    ex.controls['base_lr'].value = 1e-3
    assert ex.error is None and 'last valid' not in ex.message.value
    np.testing.assert_array_equal(ex.lr_line.get_ydata(), cyclic(1e-3, 1e-2, N // 6, total_steps=N)(IT))


def test_more_invalid_combinations():
    ex = schedule_explorer('one_cycle', pct_start=0.6)
    ex.controls['three_phase'].value = True  # three phases need pct_start < 0.5
    assert 'pct_start' in ex.error and ex.schedule.params.get('three_phase') is None
    ex = schedule_explorer('cosine', lr_max=1e-3)
    ex.controls['eta_min'].value = 1e-2  # above lr_max
    assert 'eta_min' in ex.error


def test_message_is_html_escaped():
    ex = schedule_explorer('cyclic')
    ex.controls['base_lr'].value = 0.5
    assert '&lt;=' in ex.message.value and '<=' not in ex.message.value


@pytest.mark.parametrize('kwargs, match', [
    (dict(policy='warm_restarts'), '`policy` must be one of'),
    (dict(total_steps=1), '`total_steps` must be an integer >= 2'),
    (dict(total_steps=0), '`total_steps`'),
    (dict(total_steps=10.5), '`total_steps`'),
    (dict(total_steps=True), '`total_steps`'),
    (dict(lr=1e-3), '`lr` is not a parameter the explorer shows for one_cycle; choose from lr_max'),
    (dict(policy='cosine', pct_start=0.3), '`pct_start` is not a parameter'),
    (dict(lr_max=-1e-3), '`lr_max` must be a finite number > 0'),
    (dict(lr_max=float('nan')), '`lr_max`'),
    (dict(policy='cosine', eta_min=0.), '`eta_min` must be a finite number > 0'),
    (dict(pct_start='a lot'), '`pct_start` must be a finite number'),
    (dict(pct_start=1.5), r'`pct_start` must be a finite number in \(0, 1\)'),  # the policy's own check
    (dict(policy='cyclic', step_size=2.5), '`step_size` must be an integer'),
    (dict(anneal='exp'), "`anneal` must be one of None, 'cos', 'linear'"),
    (dict(three_phase=1), '`three_phase` must be True or False'),
    (dict(moms=(0.95, 0.85, 0.9)), r'`moms` must be \(high, low, high\)'),
    (dict(moms=None), '`moms`'),
    (dict(policy='cyclic', base_lr=1e-2, max_lr=1e-3), '`base_lr` must be <= `max_lr`'),
    (dict(compare='bogus'), '`compare` must be None, a Schedule or one of'),
    (dict(compare=['cosine']), '`compare` must be None, a Schedule or one of'),
    (dict(policy=['one_cycle']), '`policy` must be one of'),
    (dict(policy='cyclic', step_size=np.int64(50)), None),  # numpy numbers are numbers
    (dict(steps_per_epoch=0), '`steps_per_epoch` must be an integer >= 1'),
    (dict(total_steps=1000, steps_per_epoch=300), '`total_steps` must be a whole number of epochs'),
])
def test_bad_arguments_raise_naming_the_parameter(kwargs, match):
    if match is None:
        assert schedule_explorer(**kwargs).controls['step_size'].value == 50
        return
    # cyclr.checks: the wrong kind (10.5 steps, a string, None for a tuple) is a TypeError, a bad value a ValueError
    wrong_kind = [dict(total_steps=10.5), dict(total_steps=True), dict(pct_start='a lot'), dict(policy='cyclic', step_size=2.5),
                  dict(three_phase=1), dict(moms=None)]
    with pytest.raises(TypeError if repr(kwargs) in map(repr, wrong_kind) else ValueError, match=match): schedule_explorer(**kwargs)


def test_set_checks_names_and_values():
    ex = schedule_explorer('one_cycle')
    with pytest.raises(ValueError, match='`base_lr` is not a control of the explorer for one_cycle'): ex.set(base_lr=1e-3)
    with pytest.raises(ValueError, match='`policy` must be one of'): ex.set(policy='bogus')
    with pytest.raises(ValueError, match='`total_steps` must be an integer >= 2'): ex.set(total_steps=1)
    with pytest.raises(ValueError, match='`lr_max` must be a finite number > 0'): ex.set(lr_max=0)
    code = ex.code
    with pytest.raises(TypeError, match='`pct_start`'): ex.set(lr_max=1e-2, pct_start='half')
    assert ex.code == code and ex.controls['lr_max'].value == 3e-3  # nothing half-changed
    ex.set(policy='cyclic', base_lr=1e-3, total_steps=2000)  # the new policy's parameters
    assert ex.code == f'cyclic(base_lr=1e-3, max_lr=0.01, step_size={N // 6}, mode=\'triangular\', total_steps=2000)'
    ex.set(total_steps=50_000)  # beyond the slider's range: the range grows
    assert ex.total_steps == 50_000 and ex.steps.max >= 50_000
    with pytest.raises(TypeError, match='`schedule` must be a Schedule'): ex.pin('one_cycle')


def test_set_redraws_once():
    ex = schedule_explorer('one_cycle')
    renders = []
    ex.image.observe(lambda c: renders.append(1), 'value')
    ex.set(lr_max=1e-2, pct_start=0.3, div=10., moms=(0.9, 0.8, 0.9))
    assert len(renders) == 1
    same_schedule(ex.schedule, one_cycle(1e-2, N, pct_start=0.3, div=10, moms=(0.9, 0.8, 0.9)))


# -- epochs and the Learner line -----------------------------------------------------------------------------------

def test_epochs_and_learner_line():
    ex = schedule_explorer('one_cycle', total_steps=5 * 200, steps_per_epoch=200, lr_max=3e-3)
    assert ex.steps.description == 'epochs' and ex.steps.value == 5 and ex.total_steps == 1000
    assert ex.learn_code == ('learn.fit_one_cycle(5, lr_max=3e-3, pct_start=0.25, div=25.0, div_final=1e5, '
                             'moms=(0.95, 0.85, 0.95), three_phase=False)')
    ex.steps.value = 3
    assert ex.total_steps == 600 and 'total_steps=600' in ex.code and ex.learn_code.startswith('learn.fit_one_cycle(3,')
    assert len(ex.lr_line.get_xdata()) == 600
    assert ex.learn_code in ex.code_box.value.replace('&#x27;', "'")
    ex.policy.value = 'cyclic'  # step_size starts at a sixth of the run it first sees
    assert ex.learn_code == 'learn.fit_clr(3, base_lr=1e-4, max_lr=0.01, step_size=100, mode=\'triangular\')'
    ex.policy.value = 'flat_cos'
    assert ex.learn_code == 'learn.fit_flat_cos(3, lr=3e-3, pct_start=0.75, div_final=1e5)'
    ex.policy.value = 'constant'
    assert ex.learn_code == 'learn.fit(3, lr=1e-3)'
    ex.policy.value = 'cosine'
    assert ex.learn_code == f'learn.fit(3, sched={ex.code})'
    assert schedule_explorer().learn_code is None


def test_learner_line_runs_the_same_schedule():
    "The `learn.fit_...` line, run on a tiny Learner, records the LRs the explorer plots."
    learner = pytest.importorskip('cyclr.learner', reason='cyclr.learner is not exported yet')
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from cyclr.data import DataLoaders
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g)
    dls = DataLoaders(DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x, y), batch_size=16))
    for policy, kw in [('one_cycle', dict(lr_max=1e-2, pct_start=0.3)), ('cyclic', dict(step_size=3)),
                       ('flat_cos', {}), ('constant', {}), ('cosine', {})]:
        ex = schedule_explorer(policy, total_steps=2 * 4, steps_per_epoch=4, **kw)
        learn = learner.Learner(dls, nn.Linear(4, 2), nn.CrossEntropyLoss(), opt_func=torch.optim.SGD, progress=False)
        eval(ex.learn_code, {**vars(S), 'learn': learn})
        np.testing.assert_allclose(learn.recorder.lrs, ex.schedule(np.arange(8)), rtol=1e-12, err_msg=policy)


# -- display ---------------------------------------------------------------------------------------------------------

def test_is_a_widget_with_a_short_repr():
    ex = schedule_explorer()
    assert isinstance(ex, widgets.VBox) and isinstance(ex, ScheduleExplorer)
    assert repr(ex) == f'ScheduleExplorer({ex.code})' and len(repr(ex)) < 200
    from PIL import Image
    import io
    pixels = lambda png: np.asarray(Image.open(io.BytesIO(png)))
    np.testing.assert_array_equal(pixels(ex.snapshot().data), pixels(ex.image.value))  # the same picture
    state = ex.get_state()
    assert 'children' in state  # a real widget model the front end can render


# -- the LR picker ---------------------------------------------------------------------------------------------------

def fake_result(n=100, suggestions=None):
    lrs = np.logspace(-7, 1, n)
    x = np.log10(lrs)
    losses = 2.3 - 1.6 / (1 + np.exp(-2.2 * (x + 3.5))) + 0.02 * np.exp(2.6 * (x + 0.8))
    sugg = suggestions or dict(minimum=1e-2, steep=5e-4, valley=3e-4, slide=2e-3)
    return fake(lrs, losses, namedtuple('Suggestions', list(sugg))(**sugg))


def fake(lrs, values, suggestions, score_name='loss', mode='exp'):
    "What the picker reads of an LRFindResult: `curve` (lower is better), `suggestions`, `mode`, `score_name`."
    lrs, values = np.asarray(lrs, dtype=float), np.asarray(values, dtype=float)
    return SimpleNamespace(curve=(lrs, values, np.arange(len(lrs))), suggestions=suggestions, mode=mode, score_name=score_name,
                           lrs=lrs, losses=values)


def test_picker_plots_the_curve_and_the_suggestions():
    res = fake_result()
    p = lr_find_picker(res)
    assert isinstance(p, LRPicker) and isinstance(p, widgets.VBox)
    curve = p.ax.lines[0]
    np.testing.assert_array_equal(curve.get_xdata(), res.lrs[5:-5])  # first and last 5 points skipped
    np.testing.assert_array_equal(curve.get_ydata(), res.losses[5:-5])
    assert p.ax.get_xscale() == 'log'
    dots = {l.get_label().split(':')[0]: l for l in p.ax.lines if l.get_label().split(':')[0] in res.suggestions._fields}
    assert set(dots) == set(res.suggestions._fields)
    for name, dot in dots.items():
        lr = getattr(res.suggestions, name)
        assert dot.get_xdata()[0] == lr
        expected = np.interp(np.log(lr), np.log(res.lrs[5:-5]), res.losses[5:-5])
        assert math.isclose(dot.get_ydata()[0], expected, rel_tol=1e-12)
    assert [t.get_text() for t in p.ax.get_legend().get_texts()] == [f'{k}: {v:.2e}' for k, v in res.suggestions._asdict().items()]


def test_picker_value_and_marker_follow_the_slider():
    p = lr_find_picker(fake_result())
    assert p.value == 3e-4 and list(p.marker.get_xdata()) == [3e-4, 3e-4]  # starts at valley
    png = p.image.value
    p.slider.value = 1e-3
    assert p.value == 1e-3 and list(p.marker.get_xdata()) == [1e-3, 1e-3]
    assert p.dot.get_xdata()[0] == 1e-3 and p.image.value != png
    assert 'chosen LR <b>0.001</b>' in p.readout.value
    p.value = 2e-5
    assert p.slider.value == 2e-5 and p.marker.get_xdata()[0] == 2e-5
    assert len(p.ax.lines) == 1 + 4 + 2 and len(p.figure.axes) == 1  # curve, suggestions, marker, dot: nothing added


def test_picker_buttons_jump_to_suggestions():
    res = fake_result()
    p = lr_find_picker(res)
    assert list(p.buttons) == list(res.suggestions._fields)
    for name in res.suggestions._fields:
        p.buttons[name].click()
        assert p.value == getattr(res.suggestions, name) and p.marker.get_xdata()[0] == getattr(res.suggestions, name)


def test_picker_skips_missing_suggestions_and_defaults():
    p = lr_find_picker(fake_result(suggestions=dict(minimum=1e-2, steep=float('nan'))))
    assert list(p.buttons) == ['minimum'] and p.value == 1e-2  # no valley: the first finite suggestion
    p = lr_find_picker(fake_result(suggestions=dict(steep=float('nan'))))
    assert p.buttons == {} and math.isclose(p.value, math.sqrt(1e-7 * 10), rel_tol=1e-9)  # geometric middle
    assert lr_find_picker(fake_result(), value=1e-5).value == 1e-5


def test_picker_bad_input():
    with pytest.raises(TypeError, match='`result` must be an LRFindResult'): lr_find_picker(object())
    with pytest.raises(ValueError, match='`result` must hold at least 2'):
        lr_find_picker(fake([1e-3], [1.], None))
    with pytest.raises(ValueError, match='`value` must be a learning rate in'): lr_find_picker(fake_result(), value=100.)
    with pytest.raises(ValueError, match='`result` has fewer than 2 finite points'):
        lr_find_picker(fake([1e-3, 1e-2], [np.nan, 1.], None))


def test_picker_with_a_real_range_test():
    lr_find_mod = pytest.importorskip('cyclr.lr_find', reason='cyclr.lr_find is not exported yet')
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)  # the same model whatever ran before
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    res = lr_find_mod.lr_find(model, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g),
                              nn.CrossEntropyLoss(), opt, num_it=60, show_plot=False)
    p = lr_find_picker(res)
    finite = {k: v for k, v in res.suggestions._asdict().items() if np.isfinite(v)}
    assert set(p.buttons) == set(finite)
    assert np.isfinite(res.recommended) and p.value == res.recommended   # pre-selects the test's one answer
    p.slider.value = float(res.lrs[30])
    assert p.value == float(res.lrs[30]) and p.marker.get_xdata()[0] == float(res.lrs[30])


def test_picker_plots_a_validation_metric_as_measured():
    "A validation-scored test's curve is the metric sign-flipped (lower is better): the picker shows the metric itself."
    lrs = np.logspace(-5, 0, 40)
    acc = 0.5 + 0.4 * np.exp(-(np.log10(lrs) + 2.5) ** 2)
    sugg = namedtuple('Suggestions', ['valley'])(valley=10 ** -2.5)
    p = lr_find_picker(fake(lrs, -acc, sugg, score_name='valid accuracy'), skip_start=0, skip_end=0)
    np.testing.assert_array_equal(p.ax.lines[0].get_ydata(), acc)
    assert p.ax.get_ylabel() == 'valid accuracy' and 'valid accuracy there' in p.readout.value
    assert 0.89 < p.dot.get_ydata()[0] <= 0.9  # about the peak accuracy (interpolated), under the valley marker
    p = lr_find_picker(fake(lrs, 1 - acc, sugg, score_name='valid loss'), skip_start=0, skip_end=0)
    np.testing.assert_array_equal(p.ax.lines[0].get_ydata(), 1 - acc)  # a loss is already lower-is-better


def test_picker_follows_the_curve_not_the_training_loss():
    lrs = np.logspace(-5, 0, 30)
    res = fake(lrs, np.linspace(1, 2, 30), namedtuple('S', ['valley'])(valley=1e-3), score_name='valid loss')
    res.losses = np.full(30, 99.)  # the training loss: not what the suggestions were read from
    assert 99. not in lr_find_picker(res, skip_start=0, skip_end=0).ax.lines[0].get_ydata()


def test_log_slider_arrow_keys_move_by_a_visible_factor():
    "An arrow-key press moves a slider one `step`: ten presses must change the value visibly, and the start stays on the grid."
    for w in (schedule_explorer('one_cycle', lr_max=0.0351).controls['lr_max'], lr_find_picker(fake_result()).slider):
        start = math.log10(w.value)
        assert 10 ** (10 * w.step) >= 1.2
        k = (start - w.min) / w.step
        assert abs(k - round(k)) < 1e-6  # the browser's snap to the grid leaves the starting value as it is


def test_explorer_legend_does_not_cover_the_curve():
    ex = schedule_explorer('one_cycle', compare='cosine')
    ex.figure.canvas.draw()
    legend = ex.ax_lr.get_legend().get_window_extent()
    axes = ex.ax_lr.get_window_extent()
    assert legend.y0 >= axes.y1 - 1  # above the LR panel, not over its curves
    assert legend.y1 <= ex.figure.bbox.y1 + 1  # and still inside the picture


def test_picker_starts_at_the_recommendation_even_past_the_plotted_curve():
    "The recommendation may sit in the sweep's last steps, which the curve leaves out: the slider still reaches it."
    res = fake_result()
    lrs = res.curve[0]
    res.recommended = float(lrs[-1] * 3)       # beyond every recorded LR
    p = lr_find_picker(res)
    assert p.value == pytest.approx(res.recommended, rel=1e-9) and p.marker.get_xdata()[0] == pytest.approx(res.recommended, rel=1e-9)
    res.recommended = float('nan')             # no recommendation: the valley rule, as before
    assert lr_find_picker(res).value == 3e-4
