"""Build the documentation site from the notebooks into `_docs/` (or the folder given as the first argument).

nbdev 2's own docs need Quarto, which cannot be installed here, so this script does the same job with what the dev
install has: every notebook in nbs/ becomes an HTML page (nbconvert, with its stored outputs; `#| hide` cells and
`#|` directive lines left out, as in README.md), and every module gets an API page listing its public names with
their signatures, docstrings and a table of parameters -- name, default and the comment written next to each
parameter in the source (the "docments" style the notebooks use). `index.html` is the README with links to all.

Run it with `make docs`; open `_docs/index.html`."""
import html, importlib, inspect, re, sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root))
from cyclr.docs import param_docs  # noqa: E402  (the one reader of parameter comments, also behind help())

STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}
nav{font-size:.9rem;margin-bottom:1.5rem} nav a{margin-right:.8rem}
code,pre{font-family:ui-monospace,monospace;font-size:.88rem} pre{background:#f6f8fa;padding:.6rem;white-space:pre-wrap}
table.params{border-collapse:collapse;margin:.5rem 0 1.5rem} table.params td,table.params th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
h3{margin-top:2rem;border-top:1px solid #eee;padding-top:1rem}
</style>"""

def page(title, body, nav):
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)} - cyclr</title>{STYLE}</head><body><nav>{nav}</nav>{body}</body></html>"

# ---- parameters and their comments ------------------------------------------------------------------------------
def _md(text):
    "Escaped `text` with `backticks` as code."
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(text))

def _table(params, docs):
    rows = ''.join(f"<tr><td><code>{p.name}</code></td><td><code>{html.escape('' if p.default is p.empty else repr(p.default))}</code></td>"
                   f"<td>{_md(docs.get(p.name, ''))}</td></tr>" for p in params)
    return f"<table class='params'><tr><th>parameter</th><th>default</th><th>what it is</th></tr>{rows}</table>"

def api_entry(name, obj, level=3):
    "HTML for one public name: signature, docstring, parameter table; for a class, each public method the same way."
    target = obj.__init__ if inspect.isclass(obj) else obj
    try: sig = inspect.signature(target)
    except (TypeError, ValueError): sig = None
    params = [p for p in (sig.parameters.values() if sig else []) if p.name not in ('self', 'cls')]
    anchor = name.replace('.', '-')
    out = [f"<h{level} id='{anchor}'>{name}</h{level}>"]
    if sig is not None: out.append(f"<pre>{html.escape(name + '(' + ', '.join(str(p) for p in params) + ')')}</pre>")
    doc = (inspect.getdoc(obj) or '').split('\n\nParameters:\n')[0]  # the table below shows them
    if doc: out.append(f"<p>{_md(doc)}</p>")
    if params and (not inspect.isclass(obj) or '__init__' in vars(obj)): out.append(_table(params, param_docs(target)))
    if inspect.isclass(obj):
        own = [c for c in obj.__mro__ if c.__module__.startswith('cyclr')]
        seen = set()
        for cls in own:
            for m, f in vars(cls).items():
                if m.startswith('_') or m in seen or not inspect.isfunction(f): continue
                seen.add(m)
                out.append(api_entry(f'{name}.{m}', f, level=4))
    return '\n'.join(out)

# ---- notebooks ----------------------------------------------------------------------------------------------------
def notebook_html(path):
    "The notebook at `path` as an HTML body, without hidden cells and directive lines."
    nb = nbformat.read(path, as_version=4)
    cells = []
    for c in nb.cells:
        lines = c.source.splitlines()
        if c.cell_type == 'code':
            if any(l.strip().replace(' ', '') in ('#|hide', '#|exporthide') for l in lines): continue
            c.source = '\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip()
            if not c.source: continue
        cells.append(c)
    nb.cells = cells
    nb.metadata['language_info'] = {'name': 'python'}
    body, _ = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    return body

def main(out=root / '_docs'):
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    nbs = sorted((root / 'nbs').glob('*.ipynb'))
    mods = sorted({m.split('.')[1] for m in importlib.import_module('cyclr._modidx').d['syms'] if m.count('.') == 1} - {'__init__'})
    nav = ("<a href='index.html'><b>cyclr</b></a>" + ''.join(f"<a href='{p.stem}.html'>{p.stem}</a>" for p in nbs if p.stem != 'index')
           + "<br>API: " + ''.join(f"<a href='api_{m}.html'>{m}</a>" for m in mods))
    for p in nbs:
        name = 'index' if p.stem == 'index' else p.stem
        (out / f'{name}.html').write_text(page(p.stem, notebook_html(p), nav), encoding='utf-8')
    for m in mods:
        mod = importlib.import_module(f'cyclr.{m}')
        names = [n for n in getattr(mod, '__all__', []) if not n.startswith('_')]
        doc = _md(inspect.getdoc(mod) or '')
        body = f"<h1>cyclr.{m}</h1><p>{doc}</p>" + ''.join(api_entry(n, getattr(mod, n)) for n in names if hasattr(mod, n))
        (out / f'api_{m}.html').write_text(page(f'cyclr.{m}', body, nav), encoding='utf-8')
    print(f"wrote {len(nbs)} notebook pages and {len(mods)} API pages to {out}")

if __name__ == '__main__': main(*sys.argv[1:])
