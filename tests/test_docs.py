"""The documentation site: `tools/make_docs.py` (what `make docs` runs) builds it from the notebooks, a local HTTP
server on 127.0.0.1 serves it, and Debian's Chromium, driven headless by playwright, opens it: the index loads with
its links, and the API table of `fit_one_cycle` lists every parameter with the comment written next to it in the
source. Needs /usr/bin/chromium; skipped, with that reason, only when it is not installed (the build itself is
checked without a browser). Screenshots go to test_artifacts/."""
import functools
import http.server
import inspect
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cyclr.fit import FitPolicies

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path('/usr/bin/chromium')
ARTIFACTS = ROOT / 'test_artifacts'
from cyclr.docs import param_docs


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs')
    subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_docs.py'), str(out)], check=True, cwd=ROOT, timeout=600)
    return out


def test_every_notebook_and_module_has_a_page(site):
    nbs = {p.stem for p in (ROOT / 'nbs').glob('*.ipynb')}
    assert {p.stem for p in site.glob('*.html') if not p.stem.startswith('api_')} == nbs
    for mod in ('learner', 'fit', 'schedules', 'lr_find', 'training', 'state', 'checks'):
        assert (site / f'api_{mod}.html').exists(), mod


def test_param_docs_reads_the_comments_next_to_the_parameters():
    def f(a,        # the first
          b=2,      # the second
          c=3, d=4):  # both of these
        "Doc."
    assert param_docs(f) == {'a': 'the first', 'b': 'the second', 'c': 'both of these', 'd': 'both of these'}


def test_help_shows_the_parameter_comments():
    import pydoc
    from cyclr.learner import Learner
    text = pydoc.render_doc(Learner.fit_one_cycle, renderer=pydoc.plaintext)
    for name, doc in param_docs(Learner.fit_one_cycle).items(): assert f'{name}: {doc}' in text
    assert text.count('Parameters:') == 1


@pytest.fixture(scope='module')
def url(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown(); server.server_close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f'Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)')
def test_the_site_in_a_real_browser(url, tmp_path):
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    expected = {n: d.replace('`', '') for n, d in param_docs(FitPolicies.fit_one_cycle).items()}  # code spans render as <code>
    assert len(expected) >= 8 and all(expected.values())  # every parameter of fit_one_cycle is documented
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / 'profile'), executable_path=str(CHROMIUM), headless=True,
                                                    args=['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'])
        page = ctx.new_page()
        page.route('https://**', lambda route: route.abort())
        page.goto(f'{url}/index.html')
        assert page.title().startswith('index') and page.locator('nav a[href="api_learner.html"]').count() == 1
        page.goto(f'{url}/api_learner.html#Learner-fit_one_cycle')
        heading = page.locator('#Learner-fit_one_cycle')
        assert heading.count() == 1
        table = heading.locator('xpath=following-sibling::table[1]')
        rows = {r.locator('td').nth(0).inner_text(): r.locator('td').nth(2).inner_text() for r in table.locator('tr').all()[1:]}
        page.screenshot(path=str(ARTIFACTS / 'docs_fit_one_cycle.png'))
        ctx.close()
    assert rows == expected
    assert list(rows)[:5] == ['n_epoch', 'lr_max', 'div', 'div_final', 'pct_start']
