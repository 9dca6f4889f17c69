"""The commands of the README and docs/ run as written after the README's install line, each in a
fresh process."""

import os
import pathlib
import re
import subprocess
import sys

from tests.cli import ROOT

BENCHMARKS = sorted((ROOT / 'benchmarks').glob('*.py'))


def test_every_benchmark_starts_from_the_repository_root():
  # `python benchmarks/X.py` puts benchmarks/, not the root, on sys.path: rem_jax must come from
  # the install (requirements.txt installs the package itself). --help stops after the imports
  # and the flag definitions (absl exits with status 1 after printing it).
  env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
  processes = {path.name: subprocess.Popen(
      [sys.executable, str(path.relative_to(ROOT)), '--help'], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for path in BENCHMARKS}
  for name, process in processes.items():
    output = process.communicate(timeout=300)[0]
    assert 'Traceback' not in output and 'Error' not in output, f'{name}:\n{output[-3000:]}'
    assert '--output' in output or '--config' in output, f'{name}:\n{output[-3000:]}'


def test_every_python_command_in_the_readme_and_the_docs_names_an_existing_script():
  pages = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
  text = '\n'.join(page.read_text() for page in pages)
  scripts = set(re.findall(r'python\s+((?:benchmarks|configs)/\w+\.py|launch\.py)', text))
  modules = set(re.findall(r'python\s+-m\s+([\w.]+)', text)) - {'pytest', 'venv'}
  assert scripts and all((ROOT / script).is_file() for script in scripts), scripts
  for module in modules:
    path = ROOT / pathlib.Path(*module.split('.'))
    assert path.with_suffix('.py').is_file() or (path / '__main__.py').is_file(), module
