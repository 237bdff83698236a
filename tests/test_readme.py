"README.md is generated from nbs/index.ipynb; a stale README fails here as well as in `make test`'s sync check."
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _make_readme():
    spec = importlib.util.spec_from_file_location('make_readme', ROOT / 'tools' / 'make_readme.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_readme_is_the_rendering_of_the_index_notebook():
    text, images = _make_readme().render()
    assert (ROOT / 'README.md').read_text(encoding='utf-8') == text, 'README.md is stale: run `make export`'
    for name, data in images.items():
        assert (ROOT / 'images' / name).read_bytes() == data, f'images/{name} is stale: run `make export`'

def test_readme_shows_exactly_the_two_commands():
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    block = text.split('```sh', 1)[1].split('```', 1)[0]
    commands = [l.split('#')[0].strip() for l in block.strip().splitlines()]
    assert commands == ['make demo', 'make test']
    makefile = (ROOT / 'Makefile').read_text()
    assert '\ndemo:' in makefile and '\ntest:' in makefile
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()
