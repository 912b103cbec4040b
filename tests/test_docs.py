"""The README front page: short, its links resolve, its Python example runs. (The
documentation site itself is built with `mkdocs build --strict` in .ci/run, which fails
on a broken link, anchor or API reference.)"""

import glob
import json
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


DOCS = os.path.join(ROOT, "docs")
SNIPPET = re.compile(r"```python\n(.*?)```", re.S)
# What makes a snippet a test: its runs cut to 2-3 epochs, with the rest of its schedule
# scaled to fit (the snippets show the real settings).
SHRINK = [
    ("epochs=100", "epochs=3"),
    ("start_epoch=60", "start_epoch=1"),
    ("decay_start=75, decay_end=100", "decay_start=2, decay_end=3"),
    ("validation_freq=5", "validation_freq=1"),
    (
        '"--flagfile=digits",',
        '"--flagfile=digits", "--epochs=2", "--lc_start_epoch=1", "--lr_decay_epochs=1", '
        '"--width=0.25", "--sanity_check=false",',
    ),
]


def snippets() -> list[tuple[str, int, str]]:
    """(file, index, code) of every Python snippet in the README and docs/."""
    found = []
    for path in [README, *sorted(glob.glob(os.path.join(DOCS, "*.md")))]:
        with open(path) as file:
            for index, code in enumerate(SNIPPET.findall(file.read())):
                found.append((os.path.relpath(path, ROOT), index, code))
    return found


def shrunk(code: str) -> str:
    for long, short in SHRINK:
        code = code.replace(long, short)
    epochs = [int(value) for value in re.findall(r"\bepochs=(\d+)", code)]
    assert all(value <= 5 for value in epochs), "a snippet trains long: add a SHRINK rule"
    return code


@pytest.mark.tensorflow_only  # the snippets' code is backend-independent: checked once
@pytest.mark.parametrize(
    "source, index, code", snippets(), ids=[f"{s}#{i}" for s, i, _ in snippets()]
)
def test_every_python_snippet_in_the_readme_and_docs_runs(source, index, code, tmp_path):
    """Each snippet alone (every import it needs is its own), in a new process."""
    script = tmp_path / "snippet.py"
    check = ""
    if "model.fit(" in code and "validation_data" in code:
        check = "\nprint(sorted(model.history.history['val_teacher_accuracy']))\n"
    script.write_text(shrunk(code) + check)
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    if check:
        accuracies = eval(completed.stdout.strip().splitlines()[-1])
        assert len(accuracies) == 3 and max(accuracies) > 0.2  # it learnt something in 3 epochs


def test_there_are_snippets_to_run():
    assert len(snippets()) >= 4


def test_every_name_on_the_python_api_page_imports_from_where_it_says():
    """A name under a heading without a module imports from lcmt_tf; under a heading
    that names one (`## Data (`lcmt_tf.data`)`), from that module."""
    import importlib

    with open(os.path.join(DOCS, "python-api.md")) as file:
        lines = file.read().splitlines()
    module, checked = "lcmt_tf", 0
    for line in lines:
        if line.startswith("## "):
            named = re.search(r"\(`(lcmt_tf[\w.]*)`\)", line)
            module = named.group(1) if named else "lcmt_tf"
        documented = re.match(r"::: (lcmt_tf[\w.]+)", line)
        if documented:
            name = documented.group(1).rsplit(".", 1)[1]
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
            checked += 1
    assert checked > 40


# -- figures: every measured number in the docs is in the JSON its block names ---------

# A block of a page (a paragraph, a table, a list) whose figures were measured starts with
# a tag naming the files that hold them; the tag holds until the next tag, the next
# heading or `<!-- end figures -->`:
#     <!-- figures: results/digits_experiment_table.json, results/other.json -->
FIGURES_TAG = re.compile(r"<!-- figures: (.*?) -->")
NUMBER = re.compile(r"(?<![\w.])[-−+]?\d[\d,]*(?:\.\d+)?(?![\w])")


def measured_blocks() -> list[tuple[str, list[str], str]]:
    """(page, JSON files, text) of every tagged block in the README and docs/; code
    spans, code blocks, links' targets and HTML comments are not text."""
    blocks = []
    for path in [README, *sorted(glob.glob(os.path.join(DOCS, "*.md")))]:
        with open(path) as file:
            text = re.sub(r"```.*?```", "", file.read(), flags=re.S)
        sources, lines = None, []
        for line in [*text.splitlines(), "#"]:
            tag = FIGURES_TAG.search(line)
            if tag or line.startswith("#") or "<!-- end figures -->" in line:
                if sources and lines:
                    blocks.append((os.path.relpath(path, ROOT), sources, "\n".join(lines)))
                sources = [s.strip() for s in tag.group(1).split(",")] if tag else None
                lines = []
                continue
            if sources:
                lines.append(line)
    return blocks


def json_numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [number for item in value for number in json_numbers(item)]
    return []


def printed_numbers(text: str) -> list[str]:
    """The figures of a block worth checking: every number with decimals, and integers of
    three digits or more (counts and small integers, 5 seeds or epoch 60, are settings)."""
    text = re.sub(r"`[^`]*`", "", text)  # code spans: flags and commands
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"<!--.*?-->", "", text)
    found = []
    for token in NUMBER.findall(text.replace("−", "-")):
        digits = token.lstrip("+-").replace(",", "")
        if "." in digits or len(digits) >= 3:
            found.append(token)
    return found


# A printed figure is a JSON value as it is, as a percentage, or in larger units (bytes as
# MB, MiB, GB).
SCALES = (1.0, 100.0, *(1.0 / base**power for base in (1000, 1024) for power in (1, 2, 3)))


def matches(token: str, values: list[float]) -> bool:
    number = float(token.replace(",", ""))
    decimals = len(token.split(".")[1]) if "." in token else 0
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(
        abs(abs(scale * value) - abs(number)) <= tolerance for value in values for scale in SCALES
    )


def test_every_figure_tagged_as_measured_is_in_its_json():
    blocks = measured_blocks()
    assert len(blocks) >= 10, "the docs tag their measured figures"
    missing = []
    for page, sources, text in blocks:
        values = []
        for source in sources:
            with open(os.path.join(DOCS, source)) as file:
                values += json_numbers(json.load(file))
        missing += [f"{page}: {token} (not in {', '.join(sources)})"
                    for token in printed_numbers(text) if not matches(token, values)]  # fmt: skip
    assert not missing, "\n".join(missing)


def test_every_results_file_names_its_software_and_a_clean_commit():
    for path in sorted(glob.glob(os.path.join(DOCS, "results", "*.json"))):
        with open(path) as file:
            record = json.load(file)
        software = record.get("software") if isinstance(record, dict) else None
        if software is None and isinstance(record, dict):
            blocks = [v.get("software") for v in record.values() if isinstance(v, dict)]
            software = next((block for block in blocks if block), None)
        name = os.path.basename(path)
        assert software, f"{name} has no software block"
        commit = software.get("git_commit") if isinstance(software, dict) else None
        assert commit is None or not str(commit).endswith("dirty"), f"{name}: a dirty tree"


def test_the_generated_reference_tables_are_current():
    """docs/command-line.md commits its tables (flags, flag files); `python docs/hooks.py`
    writes them, and they must say what the code says now."""
    sys.path.insert(0, DOCS)
    try:
        import hooks
    finally:
        sys.path.remove(DOCS)
    for name in hooks.PAGES:
        with open(os.path.join(DOCS, name)) as file:
            text = file.read()
        assert hooks.MARKER.search(text), f"{name} holds no generated table"
        assert hooks.current(text, name) == text, f"{name}: run python docs/hooks.py"
