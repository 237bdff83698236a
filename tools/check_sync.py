"""Fail when the notebooks and what is generated from them disagree.

Runs `nbdev_export` and the README script on a copy of the project and compares the results with
the files here: `cyclr/*.py` must equal the export of `nbs/`, README.md must equal the rendering of
`nbs/index.ipynb`. Nothing in the working tree is changed."""
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

root = Path(__file__).resolve().parents[1]
bin_dir = Path(sys.executable).parent

def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in ['settings.ini', 'nbs', 'cyclr', 'tools', 'README.md']:
            src = root / name
            if src.is_dir(): shutil.copytree(src, tmp / name, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
            elif src.exists(): shutil.copy2(src, tmp / name)
        shutil.rmtree(tmp / 'cyclr')  # export from nothing, so a stale or extra module shows up too
        subprocess.run([str(bin_dir / 'nbdev_export')], cwd=tmp, check=True)
        subprocess.run([sys.executable, str(tmp / 'tools' / 'make_readme.py')], cwd=tmp, check=True)
        problems = []
        fresh = {p.relative_to(tmp) for p in (tmp / 'cyclr').rglob('*.py')}
        here = {p.relative_to(root) for p in (root / 'cyclr').rglob('*.py')}
        for rel in sorted(fresh | here):
            if rel not in here: problems.append(f'{rel}: exported from the notebooks but missing here')
            elif rel not in fresh: problems.append(f'{rel}: here but no notebook exports it')
            elif not filecmp.cmp(root / rel, tmp / rel, shallow=False): problems.append(f'{rel}: differs from nbdev_export')
        for rel in ['README.md', *[p.relative_to(tmp) for p in (tmp / 'images').glob('*')]]:
            if not (root / rel).exists() or not filecmp.cmp(root / rel, tmp / rel, shallow=False):
                problems.append(f'{rel}: stale, run `make export` (tools/make_readme.py)')
    if problems:
        print('Notebooks and generated files are out of sync:', *problems, sep='\n  ')
        sys.exit(1)
    print('notebooks, cyclr/ and README.md are in sync')

if __name__ == '__main__': main()
