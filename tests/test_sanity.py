"""The start-up loss check: every active term moves the student and none the teacher;
a deliberately broken consistency term (the bug a popular SSL framework shipped for
years), a detached cross-entropy and a teacher that receives gradients are caught."""

import numpy as np
import pytest
from keras import ops

from lcmt_tf.sanity import LossWiringError, check_loss_terms

from conftest import random_batch, small_mean_teacher


def broken(model, term):
    """`model` with `term` cut off from the student (or, for "teacher", the teacher's
    logits no longer detached), the way such bugs look in code."""
    compute = model.compute_losses

    def compute_losses(data):
        loss, terms, logits = compute(data)
        if term == "teacher":
            # Recompute the consistency on live teacher logits: gradient reaches it.
            images, _ = model.joined_images(data)
            _, student = model.network_outputs(model.student, images, 4)
            _, teacher = model.network_outputs(model.teacher, images, 4)
            terms["consistency"] = ops.mean(ops.square(ops.softmax(student) - ops.softmax(teacher)))
        else:
            terms[term] = ops.stop_gradient(terms[term])
        return loss, terms, logits

    model.compute_losses = compute_losses
    return model


def test_a_correct_model_passes_and_changes_nothing():
    model = small_mean_teacher(lc_epsilon=1e6)  # every pair a neighbor: LC is checked
    batch = random_batch()
    before = [np.array(v) for v in model.variables]
    norms = check_loss_terms(model, batch, consistency_weight=10.0, lc_weight=1.0)
    assert set(norms) == {"ce", "consistency", "lc"}
    assert all(student > 0 and teacher == 0 for _, student, teacher in norms.values())
    for variable, value in zip(model.variables, before):
        np.testing.assert_array_equal(np.array(variable), value)


@pytest.mark.slow_on_jax
@pytest.mark.parametrize("term", ["consistency", "ce", "lc"])
def test_a_term_that_does_not_reach_the_student_stops_the_run(term):
    model = broken(small_mean_teacher(lc_epsilon=1e6), term)
    with pytest.raises(LossWiringError, match=f"the {term} loss has no gradient into the student"):
        check_loss_terms(model, random_batch(), consistency_weight=10.0, lc_weight=1.0)


@pytest.mark.slow_on_jax
def test_a_gradient_into_the_teacher_stops_the_run():
    model = broken(small_mean_teacher(), "teacher")
    with pytest.raises(LossWiringError, match="gradient into the teacher"):
        check_loss_terms(model, random_batch(), consistency_weight=10.0, lc_weight=0.0)


def test_inactive_terms_are_not_checked():
    model = broken(small_mean_teacher(use_local_clustering=False), "consistency")
    norms = check_loss_terms(model, random_batch(), consistency_weight=0.0, lc_weight=0.0)
    assert set(norms) == {"ce"}
