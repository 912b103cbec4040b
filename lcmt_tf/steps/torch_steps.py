"""The methods' steps on the PyTorch backend, as Keras' guide to customizing `fit` on
PyTorch writes them: zero the gradients, the forward pass in training mode,
`backward`, and the optimizer's `apply` under `torch.no_grad()`; the teacher's EMA
update under `no_grad` too. Keras' torch trainer runs them eagerly (or through
`torch.compile` with `jit_compile=True`), on the model's variables themselves.
"""

from __future__ import annotations

import contextlib

import torch


class TorchSteps:
    """train_step(data) -> logs and test_step(data) -> logs, as Keras' torch trainer
    calls them (one step per call: Keras' torch trainer refuses steps_per_execution
    above 1)."""

    def train_step(self, data):
        variables = self.trainable_variables
        # The student's parameters are the only ones that require a gradient: the
        # teacher's variables are non-trainable (requires_grad False), so autograd does
        # not record its forward pass for the backward one.
        self.zero_grad()
        loss, terms, labeled_logits = self.compute_losses(data)
        self.optimizer.scale_loss(loss).backward()
        gradients = [variable.value.grad for variable in variables]
        with torch.no_grad():
            applied = self.step_applied(gradients)
            self.optimizer.apply(gradients, variables)
            for teacher_variable, student_variable in self.ema_pairs:
                teacher_variable.assign(
                    self.moving_average(teacher_variable.value, student_variable.value, applied)
                )
            for teacher_variable, student_variable in self.statistics_pairs:
                teacher_variable.assign(student_variable.value)
            return self.update_metrics(terms, labeled_logits)

    def test_step(self, data):
        with torch.no_grad():
            return self.evaluation_metrics(data)

    def fix_random_streams(self) -> int:
        """Makes every seed generator of the model draw from its own state; returns how
        many it changed. Called once the networks are built (and on every rebuild).

        Keras workaround: on torch, Keras' dropout with an unseeded generator
        (`Dropout(rate)`, `seed=None`: the networks' own dropout) skips the generator
        and draws from torch's global random state (Keras 3.15,
        keras/src/backend/torch/random.py), which no checkpoint holds: a resumed run
        would not continue the dropout masks, and two identical steps would differ.
        Every other random op draws from the generator's state, which lcmt_tf saves.
        Giving such a generator an initial seed (`_initial_seed`, read only for that
        test and for its own config) sends dropout through the state too; the draws
        still come from the state Keras seeded. tests/test_keras_workarounds.py fails
        when Keras stops taking this path."""
        changed = 0
        for generator in self.seed_generators():
            if generator._initial_seed is None:
                generator._initial_seed = 0
                changed += 1
        return changed

    def keeping_state_on_failure(self):
        """A failed fit or evaluate leaves the variables as they are: nothing to do."""
        return contextlib.nullcontext()

    def gather_replicas(self, values):
        """Single-device training only on torch (lcmt_tf.distribute refuses more)."""
        return values

    def loss_term_gradient_norms(self, data, names) -> dict[str, tuple[float, float, float]]:
        """{term: (value, |d term / d student|, |d term / d teacher|)} over one batch,
        with torch.autograd.grad (no variable's .grad changes); the batch-norm
        statistics and random states the forward pass touches are restored."""
        students = [variable.value for variable in self.trainable_variables]
        teachers = [teacher.value for teacher, _ in self.ema_pairs]
        saved = [variable.value.detach().clone() for variable in self.non_trainable_variables]
        for teacher in teachers:
            teacher.requires_grad_(True)
        try:
            _, terms, _ = self.compute_losses(data)
            norms = {}
            for name in names:
                term = terms[name]
                if not term.requires_grad:  # a term of no weight (LC measured only)
                    norms[name] = (float(term.detach()), 0.0, 0.0)
                    continue
                gradients = torch.autograd.grad(
                    term, students + teachers, retain_graph=True, allow_unused=True
                )
                norms[name] = (
                    float(term.detach()),
                    _global_norm(gradients[: len(students)]),
                    _global_norm(gradients[len(students) :]),
                )
            return norms
        finally:
            for teacher in teachers:
                teacher.requires_grad_(False)
            with torch.no_grad():
                for variable, value in zip(self.non_trainable_variables, saved):
                    variable.assign(value)


def _global_norm(gradients) -> float:
    squares = [torch.sum(torch.square(g)) for g in gradients if g is not None]
    return float(torch.sqrt(sum(squares))) if squares else 0.0
