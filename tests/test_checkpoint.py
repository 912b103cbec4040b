"""Training states keyed by each variable's path, with shape and dtype checked: a state
that does not match the model is refused with one line, never restored by position."""

import keras
import numpy as np
import pytest

from lcmt_tf.errors import UserInputError
from lcmt_tf.run_dir.checkpoint import (
    FORMAT_VERSION,
    load_training_state,
    save_training_state,
    state_variables,
)

from conftest import small_mean_teacher


def built(**kwargs):
    model = small_mean_teacher(**kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model(np.zeros((2, 8, 8, 1), "float32"))
    model.optimizer.build(model.trainable_variables)
    return model


def arrays(path):
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def test_every_variable_has_its_own_key_with_the_part_that_owns_it():
    model = built()
    keyed = state_variables(model)
    assert len(keyed) == len(model.variables) + len(model.optimizer.variables)
    assert len({id(variable) for variable in keyed.values()}) == len(keyed)
    student = [key for key in keyed if key.startswith("student/")]
    teacher = [key for key in keyed if key.startswith("teacher/")]
    assert student and [key.replace("student/", "teacher/", 1) for key in student] == teacher
    assert any(key.startswith("optimizer/") for key in keyed)


def test_a_state_restores_by_path_whatever_order_the_variables_come_in(tmp_path, monkeypatch):
    source = built()
    for variable in source.student.trainable_variables:
        variable.assign(np.random.default_rng(0).normal(size=variable.shape).astype("float32"))
    save_training_state(source, tmp_path / "state.npz", 3)
    target = built()
    # Another Keras could list the variables in another order: the keys, not the
    # positions, say where each value goes.
    import lcmt_tf.run_dir.checkpoint as checkpoint

    original = checkpoint.state_variables
    monkeypatch.setattr(
        checkpoint, "state_variables", lambda model: dict(reversed(original(model).items()))
    )
    assert load_training_state(target, tmp_path / "state.npz") == 3
    for mine, theirs in zip(source.variables, target.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine),
                                      keras.ops.convert_to_numpy(theirs))  # fmt: skip


def rewrite(path, values):
    with open(path, "wb") as file:
        np.savez(file, **values)


def test_a_state_with_swapped_same_shaped_entries_in_the_first_format_is_refused(tmp_path):
    model = built()
    save_training_state(model, tmp_path / "state.npz", 2)
    saved = arrays(tmp_path / "state.npz")
    # The first format: values by position; a permutation of same-shaped entries there
    # cannot be told from a good state, so such files are refused, not resumed.
    values = [value for key, value in saved.items() if key.startswith("variable/")]
    legacy = {f"v{index:05d}": value for index, value in enumerate(values)}
    same = [i for i, v in enumerate(values) if v.shape == values[0].shape]
    if len(same) > 1:
        legacy[f"v{same[0]:05d}"], legacy[f"v{same[1]:05d}"] = values[same[1]], values[same[0]]
    rewrite(tmp_path / "legacy.npz", {**legacy, "next_epoch": np.array(2)})
    with pytest.raises(UserInputError) as error:
        load_training_state(built(), tmp_path / "legacy.npz")
    assert "first format (variables by position" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_state_of_another_model_names_the_first_mismatch(tmp_path):
    model = built()
    save_training_state(model, tmp_path / "state.npz", 2)
    saved = arrays(tmp_path / "state.npz")
    assert int(saved["format_version"]) == FORMAT_VERSION
    key = next(key for key in saved if key.startswith("variable/student/") and "kernel" in key)
    wrong_shape = {**saved, key: np.zeros((*saved[key].shape[:-1], 1), saved[key].dtype)}
    rewrite(tmp_path / "shape.npz", wrong_shape)
    with pytest.raises(UserInputError, match=r"does not match this model: .* is \(") as error:
        load_training_state(built(), tmp_path / "shape.npz")
    assert key.removeprefix("variable/") in str(error.value)
    missing = {k: v for k, v in saved.items() if k != key}
    rewrite(tmp_path / "missing.npz", missing)
    with pytest.raises(UserInputError, match=f"it has no {key.removeprefix('variable/')}"):
        load_training_state(built(), tmp_path / "missing.npz")
    extra = {**saved, "variable/student/not_a_layer/kernel": np.zeros(3, "float32")}
    rewrite(tmp_path / "extra.npz", extra)
    with pytest.raises(UserInputError, match="student/not_a_layer/kernel, which this model"):
        load_training_state(built(), tmp_path / "extra.npz")
    target = built()
    before = [keras.ops.convert_to_numpy(v).copy() for v in target.variables]
    with pytest.raises(UserInputError):
        load_training_state(target, tmp_path / "shape.npz")
    for value, variable in zip(before, target.variables):  # nothing was half-restored
        np.testing.assert_array_equal(value, keras.ops.convert_to_numpy(variable))


def test_two_callbacks_of_one_type_keep_their_own_state(tmp_path):
    from lcmt_tf.callbacks import CollapseMonitor

    model = built()
    first, second = CollapseMonitor(), CollapseMonitor()
    first.reference_spread, second.reference_spread = 0.25, 0.5
    save_training_state(model, tmp_path / "state.npz", 1, [first, second])
    restored = [CollapseMonitor(), CollapseMonitor()]
    load_training_state(model, tmp_path / "state.npz", restored)
    assert [c.reference_spread for c in restored] == [0.25, 0.5]
