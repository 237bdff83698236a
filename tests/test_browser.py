"""The schedule explorer in a real browser: Voila serves tests/browser/explorer.ipynb on 127.0.0.1 and Debian's
Chromium, driven headless by playwright, moves one slider and switches the policy (recipe: shared/BROWSER_TESTING.md).

Needs /usr/bin/chromium (`apt-get install -y chromium`); skipped, with that reason, only when it is not installed.
Screenshots go to test_artifacts/. To see the test fail, point it at a notebook whose plot ignores the sliders:
    CYCLR_BROWSER_NB=/path/to/broken.ipynb .venv/bin/python -m pytest tests/test_browser.py"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path('/usr/bin/chromium')
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(os.environ.get('CYCLR_BROWSER_NB', ROOT / 'tests' / 'browser' / 'explorer.ipynb')).resolve()
ARTIFACTS = ROOT / 'test_artifacts'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
START_TIMEOUT_S = 60   # Voila up and the first picture drawn (a fresh kernel imports torch and matplotlib)
CHANGE_TIMEOUT_MS = 10_000  # one slider change to a new picture (about 0.1 s here)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f'Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)')

PLOT = '.cyclr-schedule-explorer img.widget-image'
ONE_CYCLE = {'lr_max', 'pct_start', 'div', 'div_final', 'moms', 'three_phase', 'anneal'}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def voila_url(tmp_path_factory):
    "Voila serving NOTEBOOK on a free port of 127.0.0.1; stopped by its PID (and its kernels by its process group)."
    port, log_path = free_port(), tmp_path_factory.mktemp('voila') / 'voila.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, '-m', 'voila', str(NOTEBOOK), '--no-browser', f'--port={port}',
                                 '--Voila.ip=127.0.0.1'], cwd=NOTEBOOK.parent, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the kernels it starts go with it
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # poll a static path: every request for / would start a kernel
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}/voila/static/', timeout=2)
                break
            except urllib.error.HTTPError:
                break  # any answer, even 404, means it is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f'Voila did not start (exit code {proc.poll()}):\n{log_path.read_text()[-3000:]}')
                time.sleep(0.2)
        yield f'http://127.0.0.1:{port}/'
    finally:
        proc.terminate()
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: proc.kill()
        try: os.killpg(proc.pid, signal.SIGKILL)  # kernels left behind in Voila's process group
        except ProcessLookupError: pass


@pytest.fixture(scope='module')
def browser_page(tmp_path_factory):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path_factory.mktemp('chromium-profile')),
                                                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                                    viewport={'width': 1100, 'height': 900})
        ctx.route('https://**', lambda route: route.abort())  # a CDN stylesheet for icons that cannot load here
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_default_timeout(CHANGE_TIMEOUT_MS)
        errors = []
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.errors = errors
        yield page
        ctx.close()


def plot_src(page) -> str:
    return page.locator(PLOT).get_attribute('src') or ''


def wait_for_new_plot(page, old_src: str, timeout_ms: int = CHANGE_TIMEOUT_MS):
    "Wait until the plot's <img> shows a different, fully loaded picture."
    page.wait_for_function(
        """([sel, old]) => { const i = document.querySelector(sel);
                             return i && i.src && i.src !== old && i.complete && i.naturalWidth > 0; }""",
        arg=[PLOT, old_src], timeout=timeout_ms)


def control(page, kind: str, label: str):
    "The control of class `widget-{kind}` whose label reads exactly `label`."
    return page.locator(f'.cyclr-schedule-explorer .widget-{kind}').filter(
        has=page.locator('label.widget-label', has_text=re.compile(f'^{re.escape(label)}$')))


LABELS = '.cyclr-schedule-explorer label.widget-label, .cyclr-schedule-explorer .widget-label-basic span'


def wait_for_labels(page, shown: set, hidden: set = frozenset()):
    "Wait until the explorer's labels (sliders', dropdowns' and checkboxes' descriptions) include `shown`, none of `hidden`."
    page.wait_for_function(
        """([sel, shown, hidden]) => {
               const texts = new Set([...document.querySelectorAll(sel)].map(e => e.innerText.replace(/[\\u200b\\s]/g, '')));
               return shown.every(t => texts.has(t)) && !hidden.some(t => texts.has(t)); }""",
        arg=[LABELS, sorted(shown), sorted(hidden)], timeout=CHANGE_TIMEOUT_MS)


def test_slider_and_policy_in_a_real_browser(voila_url, browser_page):
    from playwright.sync_api import expect
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(voila_url, timeout=START_TIMEOUT_S * 1000)
    wait_for_new_plot(page, '', START_TIMEOUT_S * 1000)  # the first picture, once the kernel has run the notebook
    page.wait_for_timeout(300)  # let the layout settle for the screenshot
    page.screenshot(path=str(ARTIFACTS / 'explorer_1_initial.png'), full_page=True)
    wait_for_labels(page, {'policy', 'total_steps', *ONE_CYCLE})
    code = page.locator('.cyclr-schedule-explorer pre')
    expect(code).to_have_text(re.compile(r'^one_cycle\(lr_max=3e-3, total_steps=1000,'), timeout=CHANGE_TIMEOUT_MS)

    # ONE change: type a new peak LR into the lr_max slider's readout and press Enter; 0.03 is on the slider's grid
    # (a hundredth of a decade through the start value 3e-3): a value off the grid, such as 0.01, is snapped to 0.00993
    before = plot_src(page)
    readout = control(page, 'slider', 'lr_max').locator('.widget-readout')
    expect(readout).to_have_text('0.003', timeout=CHANGE_TIMEOUT_MS)
    readout.click()
    page.keyboard.press('Control+A')
    page.keyboard.type('0.03')
    page.keyboard.press('Enter')
    wait_for_new_plot(page, before)
    expect(readout).to_have_text('0.03', timeout=CHANGE_TIMEOUT_MS)
    expect(code).to_have_text(re.compile(r'^one_cycle\(lr_max=0.03, total_steps=1000,'), timeout=CHANGE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / 'explorer_2_lr_max.png'), full_page=True)

    # switch the policy: the sliders change to cyclic's parameters and the plot is redrawn
    before = plot_src(page)
    control(page, 'dropdown', 'policy').locator('select').select_option('cyclic')
    wait_for_labels(page, {'policy', 'total_steps', 'base_lr', 'max_lr', 'step_size', 'mode', 'gamma'}, hidden=ONE_CYCLE)
    wait_for_new_plot(page, before)
    expect(code).to_have_text(re.compile(r"^cyclic\(base_lr=1e-4, max_lr=0.01, step_size=166, mode='triangular'"), timeout=CHANGE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / 'explorer_3_cyclic.png'), full_page=True)
    assert page.errors == []  # no uncaught JavaScript errors while rendering the widgets
