"""The start-up check that every loss term actually trains the student.

A popular SSL framework shipped a Mean Teacher whose consistency cost never reached
the student's weights. Before training, on the first batch, each active term (CE;
consistency when its weight is > 0; LC when its weight is > 0 and the batch has a
neighbor pair at a nonzero distance) must have a nonzero gradient into the student
and none into the teacher, which only the EMA may move.
"""

from __future__ import annotations

import logging

from lcmt_tf.errors import UserInputError


class LossWiringError(UserInputError):
    """A loss term does not reach the student, or reaches the teacher."""


def active_terms(
    model, consistency_weight: float = 0.0, lc_weight: float = 0.0, unlabeled_weight: float = 0.0
) -> list[str]:
    """The loss terms that should move the student for these configured weights (the
    method's: consistency for Mean Teacher, the pseudo-label term for FixMatch)."""
    names = ["ce"]
    if consistency_weight > 0 and "consistency" in model.TERMS:
        names.append("consistency")
    if unlabeled_weight > 0 and "unlabeled" in model.TERMS:
        names.append("unlabeled")
    if lc_weight > 0 and model.use_local_clustering:
        names.append("lc")
    return names


def check_loss_terms(
    model, batch, consistency_weight: float = 0.0, lc_weight: float = 0.0,
    unlabeled_weight: float = 0.0,
) -> dict:  # fmt: skip
    """Raises LossWiringError naming the first term with no gradient into the student
    or any into the teacher; returns {term: (value, student norm, teacher norm)}. An
    LC term whose value is 0 on this batch (no neighbor pair at a nonzero distance: its
    gradient is 0 by construction) is logged and not checked. FixMatch's pseudo-label
    term is checked with every pseudo-label counted (threshold 0): at the start no
    prediction may be confident, and the check is of the wiring, not the confidence."""
    names = active_terms(model, consistency_weight, lc_weight, unlabeled_weight)
    threshold = getattr(model, "threshold", None)
    if threshold is not None:
        model.threshold = 0.0  # read when the check's function is traced, below
    try:
        norms = model.loss_term_gradient_norms(batch, names)
    finally:
        if threshold is not None:
            model.threshold = threshold
    for name, (value, student_norm, teacher_norm) in norms.items():
        if name == "lc" and value == 0.0:
            logging.info("Sanity check: no LC neighbor pair in the first batch; LC not checked.")
            continue
        if not student_norm > 0.0:
            raise LossWiringError(
                f"sanity check: the {name} loss has no gradient into the student's weights on "
                "the first batch, so it would not train anything; check the network's "
                "[features, logits] outputs (or pass --sanity_check=false)"
            )
        if teacher_norm != 0.0:
            raise LossWiringError(
                f"sanity check: the {name} loss has a gradient into the teacher's weights "
                f"(norm {teacher_norm:.3g}); only the EMA may change the teacher"
            )
    moved = ", ".join(f"{name} {student:.3g}" for name, (_, student, _) in norms.items())
    logging.info("Sanity check passed; gradient norms into the student: %s", moved)
    return norms
