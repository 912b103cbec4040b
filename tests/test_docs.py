"""The README front page: short, its links resolve, its Python example runs. (The
documentation site itself is built with `mkdocs build --strict` in .ci/run, which fails
on a broken link, anchor or API reference.)"""

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

README = os.path.join(ROOT, "README.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def readme_text() -> str:
    with open(README) as file:
        return file.read()


def test_the_front_page_is_short_and_every_relative_link_resolves():
    text = readme_text()
    assert text.count("\n") <= 200
    relative = [link for link in LINK.findall(text) if "://" not in link]
    assert relative, "the front page links to the documentation"
    for link in relative:
        path = link.split("#")[0]
        assert os.path.exists(os.path.join(ROOT, path)), link


@pytest.mark.tensorflow_only  # the example's code is backend-independent: checked once
def test_the_front_pages_python_example_runs(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)```", readme_text(), re.S)
    # The same code, 3 epochs long: LC from epoch 1, the learning rate decaying over the last.
    shortened = (
        code.replace("epochs=100", "epochs=3")
        .replace("start_epoch=60", "start_epoch=1")
        .replace("decay_start=75, decay_end=100", "decay_start=2, decay_end=3")
        .replace("validation_freq=5", "validation_freq=1")
    )
    assert shortened.count("=3") >= 2, "the example's schedule changed: update this test"
    script = tmp_path / "example.py"
    script.write_text(
        shortened + "\nprint(sorted(model.history.history['val_teacher_accuracy']))\n"
    )
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    accuracies = eval(completed.stdout.strip().splitlines()[-1])
    assert len(accuracies) == 3 and max(accuracies) > 0.2  # it learnt something in 3 epochs
