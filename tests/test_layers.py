"""The package's shape: commands above, library below, each import pointing down.

Every module of lcmt_tf belongs to a layer; a module may import from its own layer and
the layers below, never from one above. Imports inside functions count too; imports for
type hints only (under `if TYPE_CHECKING:`) do not. And no module finds files by walking
up from its own location: the package must work the same installed from a wheel as in a
checkout.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "lcmt_tf"

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS = [
    [
        "lcmt_tf",
        "lcmt_tf.registration",
        "lcmt_tf.errors",
        "lcmt_tf.files",
        "lcmt_tf.schedules",
        "lcmt_tf.losses",
        "lcmt_tf.diagnostics",
    ],
    [
        "lcmt_tf.models",
        "lcmt_tf.optimizers",
        "lcmt_tf.run_dir.layout",
        "lcmt_tf.run_dir.lock",
        "lcmt_tf.plots",
        "lcmt_tf.provenance",
    ],
    ["lcmt_tf.config"],
    ["lcmt_tf.flagfiles", "lcmt_tf.data", "lcmt_tf.augment"],
    [
        "lcmt_tf.semi_supervised",
        "lcmt_tf.mean_teacher",
        "lcmt_tf.fixmatch",
        "lcmt_tf.steps",
        "lcmt_tf.callbacks",
        "lcmt_tf.sanity",
        "lcmt_tf.distribute",
        "lcmt_tf.run_dir.checkpoint",
        "lcmt_tf.run_dir.fork",
        "lcmt_tf.run_dir.model_card",
    ],
    ["lcmt_tf.builders", "lcmt_tf.run_dir.lifecycle", "lcmt_tf.run_dir"],
    ["lcmt_tf.train"],
    [
        "lcmt_tf.inference",
        "lcmt_tf.curation",
        "lcmt_tf.experiments",
        "lcmt_tf.benchmark",
        "lcmt_tf.launch",
    ],
    ["lcmt_tf.cli", "lcmt_tf.__main__"],
]
# Where a module may use its own location: to find package data, or the checkout it
# runs from (provenance's git commit), never to reach files outside the package.
LOCATION_USERS = {"lcmt_tf.flagfiles", "lcmt_tf.provenance"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    best = max(
        ((len(prefix), index) for index, names in enumerate(LAYERS) for prefix in names
         if name == prefix or name.startswith(prefix + ".")),
        default=None,
    )  # fmt: skip
    assert best is not None, f"{name} is in no layer of tests/test_layers.py: add it"
    return best[1]


def type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (imports for type hints only)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def imported_modules(tree: ast.AST, name: str) -> set[str]:
    found = set()
    type_only = type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join(name.split(".")[: -node.level] + [node.module])
            found.add(base)
            # `from lcmt_tf import cli` imports the module lcmt_tf.cli
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module.split(".")[0] == "lcmt_tf"}


MODULES = sorted(PACKAGE.rglob("*.py"))


def existing(module: str) -> bool:
    path = PACKAGE.parent / module.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_no_module_imports_one_above_it(path):
    name = module_name(path)
    tree = ast.parse(path.read_text())
    upward = sorted(
        module
        for module in imported_modules(tree, name)
        if existing(module) and layer(module) > layer(name)
    )
    assert not upward, f"{name} (layer {layer(name)}) imports from above: {upward}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_no_module_finds_files_from_its_own_location(path):
    name = module_name(path)
    if name in LOCATION_USERS:
        return
    tree = ast.parse(path.read_text())
    uses = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Name)
            and node.id == "__file__"]  # fmt: skip
    assert not uses, f"{name} uses __file__ (lines {uses})"


def test_the_check_finds_an_upward_import():
    """The control: an import of the command layer from the data layer is caught."""
    tree = ast.parse("def f():\n    from lcmt_tf.cli import fail\n")
    modules = imported_modules(tree, "lcmt_tf.data.sources")
    assert max(layer(module) for module in modules) > layer("lcmt_tf.data.sources")
