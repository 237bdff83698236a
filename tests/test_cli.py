"The `cyclr` console command, run as a user would: in a subprocess, through the installed entry point."
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclr.cli import main, parse_policy_args, CLIError
from cyclr.policies import POLICIES

CYCLR = shutil.which('cyclr', path=str(Path(sys.executable).parent))

def run(*args, cwd=None):
    return subprocess.run([CYCLR, *args], capture_output=True, text=True, cwd=cwd, timeout=300)

@pytest.mark.skipif(CYCLR is None, reason='the cyclr console script is not installed in this environment')
class TestConsoleScript:
    def test_plot_writes_a_picture_of_the_schedule(self, tmp_path):
        out = tmp_path / 'sub' / 'clr.png'
        r = run('plot', 'cyclic', '--base_lr', '1e-3', '--max_lr', '6e-3', '--step_size', '200', '-o', str(out))
        assert r.returncode == 0, r.stderr
        img = np.asarray(Image.open(out).convert('L'))
        assert img.shape[0] > 200 and img.shape[1] > 400
        assert (img < 128).mean() > 0.005          # something was drawn, not a blank canvas

    @pytest.mark.parametrize('args, name', [
        (['plot', 'one_cycle', '--lr_max', '-1', '--total_steps', '10'], '`lr_max`'),
        (['plot', 'cyclic', '--base_lr', '1e-2', '--max_lr', '1e-3'], '`base_lr`'),
        (['plot', 'sgdr', '--lr_max', '0.1', '--T_0', '10', '--T_mult', '0.5'], '`T_mult`'),
        (['plot', 'one_cycle', '--lr', '1e-2'], "'lr'"),
        (['plot', 'one_cycle', '--lr_max', '1e-2'], '--total_steps'),
        (['plot', 'cosine', '--lr_max', 'nan', '--total_steps', '10'], '`lr_max` must be a finite number > 0'),
        (['plot', 'cosine', '--lr_max', '[' * 100 + '0.1' + ']' * 100, '--total_steps', '10'], '`lr_max`'),  # deeper than numpy's 64 dims
        (['plot', 'cosine', '--lr_max', '[' * 5000 + ']' * 5000, '--total_steps', '10'], '`lr_max`'),  # deeper than Python's parser
        (['plot', 'cosine', '--lr_max', '0.1', '--total_steps', '1000000000'], '10,000,000'),
        (['plot', 'sgdr', '--lr_max', '0.1', '--T_0', '1e9'], '`T_0` must be an integer'),
        (['plot', 'sgdr', '--lr_max', '0.1', '--T_0', '1000000000'], '10,000,000'),
        (['plot', 'warm_restarts'], 'unknown policy'),
        (['plot', 'cosine', '--lr_max'], '--lr_max needs a value'),
        (['plot', 'cosine', '--lr_max', '0.1', '--total_steps', '100', '--steps', '0'], '--steps'),
    ])
    def test_bad_input_is_one_line_and_status_2(self, tmp_path, args, name):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 2
        assert 'Traceback' not in r.stderr and r.stderr.strip().count('\n') == 0
        assert name in r.stderr
        assert not list(tmp_path.iterdir())       # nothing written on failure

    def test_an_unwritable_output_is_one_line_and_status_2(self, tmp_path):
        (tmp_path / 'file').write_text('')
        r = run('plot', 'cosine', '--lr_max', '0.1', '--total_steps', '100', '-o', str(tmp_path / 'file' / 'x.png'))
        assert r.returncode == 2 and 'Traceback' not in r.stderr and r.stderr.strip().count('\n') == 0
        assert 'cannot write' in r.stderr

    def test_a_name_without_extension_reports_the_file_written(self, tmp_path):
        r = run('plot', 'constant', '--lr', '0.1', '-o', 'noext', cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.strip() == 'wrote noext.png'
        assert [f.name for f in tmp_path.iterdir()] == ['noext.png']

    def test_demo_writes_its_three_pictures_and_a_table(self, tmp_path):
        r = run('demo', '--out', str(tmp_path), '--epochs', '1')
        assert r.returncode == 0, r.stderr
        for name in ['lr_find.png', 'schedule.png', 'losses.png']:
            assert Image.open(tmp_path / name).size[0] > 300
        table = [l.split() for l in r.stdout.splitlines() if l.startswith(('constant ', 'one_cycle ')) and len(l.split()) == 6]
        assert [row[0] for row in table] == ['constant', 'one_cycle']
        assert all(0 <= float(row[-1]) <= 1 for row in table)   # accuracy column

def test_every_policy_parameter_is_reachable_from_the_command_line():
    import inspect
    for name, pol in POLICIES.items():
        params = inspect.signature(pol.make).parameters
        args = [a for n in params for a in (f'--{n}', '7')]
        assert parse_policy_args(name, args) == {n: 7 for n in params}

def test_missing_required_parameters_are_named_and_nan_is_a_number():
    with pytest.raises(CLIError, match='cosine needs --lr_max, --total_steps'): parse_policy_args('cosine', [])
    kw = parse_policy_args('cosine', ['--lr_max', 'nan', '--total_steps', 'inf'])
    assert np.isnan(kw['lr_max']) and kw['total_steps'] == float('inf')

def test_values_are_python_literals_and_names_stay_strings():
    kw = parse_policy_args('cyclic', ['--base_lr', '1e-3', '--max_lr', '1e-2', '--step_size=300', '--mode', 'exp_range', '--moms', '[0.9, 0.8]'])
    assert kw == dict(base_lr=1e-3, max_lr=1e-2, step_size=300, mode='exp_range', moms=[0.9, 0.8])
    with pytest.raises(CLIError, match='expected --name value'): parse_policy_args('cyclic', ['step_size', '3'])
