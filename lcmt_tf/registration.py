"""lcmt_tf's Keras-serializable classes, registered as soon as Keras is imported.

`keras.models.load_model` finds a custom class only once its module has run the
`@keras.saving.register_keras_serializable` decorator. `import lcmt_tf` stays light
(it starts no backend: `lcmt train --dry_run` and `--help` answer at once), so the
modules that define those classes cannot simply be imported with it. Instead:

- if Keras is already imported when `lcmt_tf` is, they are imported at once (cheap:
  the backend has started);
- otherwise a finder on `sys.meta_path` waits for Keras' own import to finish and
  imports them then.

Either way the import happens only when no lcmt_tf module is half-way through its own
import (a module that imports Keras on its first lines would otherwise be imported
again, half-initialized, by the registration): those imports are counted, and the
registration runs when the outermost one ends.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

# The modules whose classes are registered with Keras (the decorator runs on import).
REGISTERED_MODULES = (
    "lcmt_tf.augment",
    "lcmt_tf.optimizers",
    "lcmt_tf.models.convnet_wn",
    "lcmt_tf.mean_teacher",
    "lcmt_tf.fixmatch",
)

_state = {"registered": False, "depth": 0}


def register() -> None:
    """Imports every module in REGISTERED_MODULES (once)."""
    if _state["registered"]:
        return
    _state["registered"] = True
    for name in REGISTERED_MODULES:
        importlib.import_module(name)


def _register_when_ready() -> None:
    if _state["depth"] == 0 and "keras" in sys.modules and not _state["registered"]:
        register()


def _wrap(loader, name: str) -> None:
    """Makes `loader` count the import of `name` (an lcmt_tf module) while it runs and
    register afterwards if Keras arrived meanwhile; for Keras itself, register after."""
    execute = loader.exec_module
    counted = name != "keras"

    def exec_module(module):
        if counted:
            _state["depth"] += 1
        try:
            execute(module)
        finally:
            if counted:
                _state["depth"] -= 1
        _register_when_ready()

    loader.exec_module = exec_module


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: asks the other finders, and wraps the loader they give
    for Keras and for lcmt_tf's modules."""

    def find_spec(self, name, path, target=None):
        if _state["registered"] or not (name == "keras" or name.startswith("lcmt_tf.")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    _wrap(spec.loader, name)
                return spec
        return None


def install() -> None:
    """Registers now if Keras is imported, else when it is (see the module's doc)."""
    if "keras" in sys.modules:
        register()
        return
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
