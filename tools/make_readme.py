"""Write README.md (and its pictures in images/) from nbs/index.ipynb with nbconvert's markdown
exporter; nbdev_readme would need Quarto, which is not available here.

Cells starting with `#| hide` are left out, `#|` directive lines are dropped."""
import base64, re, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

root = Path(__file__).resolve().parents[1]

def render(nb_path=root / 'nbs' / 'index.ipynb'):
    "Return (markdown text, {image file name: bytes})."
    nb = nbformat.read(nb_path, as_version=4)
    cells, images = [], {}
    for cell in nb.cells:
        lines = cell.source.splitlines()
        if cell.cell_type == 'code':
            if any(l.strip().replace(' ', '') in ('#|hide', '#|exporthide') for l in lines): continue
            cell.source = '\n'.join(l for l in lines if not l.lstrip().startswith('#|')).strip()
            for out in cell.get('outputs', []):
                png = out.get('data', {}).get('image/png')
                if png:
                    name = f'readme_{len(images)}.png'
                    images[name] = base64.b64decode(png)
                    out['data'] = {'text/markdown': f'![]({"images/" + name})'}
        cells.append(cell)
    nb.cells = cells
    nb.metadata['language_info'] = {'name': 'python'}  # fenced code blocks get ```python
    text, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    header = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'
    text = re.sub(r'\n{3,}', '\n\n', text.strip())
    return header + text + '\n', images

def main():
    text, images = render()
    (root / 'README.md').write_text(text, encoding='utf-8')
    if images:
        (root / 'images').mkdir(exist_ok=True)
        for name, data in images.items(): (root / 'images' / name).write_bytes(data)

if __name__ == '__main__': main()
