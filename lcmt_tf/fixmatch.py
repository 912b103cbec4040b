"""FixMatch: a `keras.Model` that trains a student on confident pseudo-labels, with an
EMA copy for evaluation and, optionally, Local Clustering.

The batches, the evaluation, the EMA, Local Clustering and the Keras surface are
`SemiSupervisedModel`'s (lcmt_tf.semi_supervised); this file adds FixMatch's loss
(Sohn et al. 2020): for every unlabeled image a weak view (the `Augmentation`:
translation and flip) and a strong view (`StrongAugmentation`: the same, then Keras'
RandAugment and Cutout); the pseudo-label argmax softmax(weak), kept where its
confidence is at least tau; and

    cross-entropy(labeled weak views) + lambda_u * CE(strong views, pseudo-labels)
    + lambda2 * LC(student features of the labeled and the weak unlabeled views).

LC takes the weak views' features, for the reason it exists: the pseudo-labels, and
so the confirmation bias LC is meant to counter, come from the weak views; the strong
views are deliberately distorted images whose neighbourhoods say little about the
image. The "teacher" of this model is FixMatch's EMA model (decay 0.999 in FixMatch
and USB): never trained, only evaluated and predicted with; its batch-norm statistics
are copied from the student after every step, as USB and TorchSSL copy the buffers.
"""

from __future__ import annotations

import keras
from keras import ops

from lcmt_tf.augment import StrongAugmentation
from lcmt_tf.errors import UserInputError
from lcmt_tf.losses import feature_spread, prediction_balance, pseudo_label_cross_entropy
from lcmt_tf.semi_supervised import (
    LabeledLogits,
    SemiSupervisedModel,
    in_range,
    log_added,
    student_outputs,
    training_batch,
)

# The per-step values compute_losses returns; fit reports each as its epoch average.
# `unlabeled` is the pseudo-label cross-entropy, `mask_rate` the share of unlabeled
# images whose pseudo-label was confident enough to count.
LOSS_TERMS = (
    "loss",
    "ce",
    "unlabeled",
    "mask_rate",
    "lc",
    "lc_neighbor_fraction",
    "feature_spread",
    "prediction_balance",
    "unlabeled_weight",
    "lc_weight",
)


@keras.saving.register_keras_serializable(package="lcmt_tf")
class FixMatch(SemiSupervisedModel):
    """FixMatch (Sohn et al. 2020), with Local Clustering as an option.

    Built with a student and an augmentation only, `fit` trains FixMatch as its paper
    does: lambda_u = 1 from the first step (`UnlabeledWeightSchedule()`, which fit adds
    when `callbacks` has none), tau = 0.95, an EMA model (decay 0.999) for evaluation.
    Local Clustering joins the loss only with a `LocalClusteringSchedule` callback.

    Args:
        student: a model mapping normalized images to `[features, logits]`.
        augmentation: the weak view, an `Augmentation` (normalization + translation
            and flip).
        strong_augmentation: the strong view, a `StrongAugmentation`; None: one that
            matches `augmentation` (RandAugment with 2 operations at magnitude 0.5,
            Cutout up to half the image's side).
        threshold: tau, the confidence a pseudo-label needs, in [0, 1].
        ema_decay: the EMA model's decay, in [0, 1].
        **kwargs: the other arguments of `SemiSupervisedModel` (lc_epsilon,
            use_local_clustering, forward_passes, ...).

    Example:
        ```python
        model = FixMatch(lcmt_tf.digits_net(), lcmt_tf.Augmentation(mean, std))
        model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9, nesterov=True))
        model.fit(batches, epochs=100)  # lambda_u = 1, tau = 0.95
        ema_logits = model.predict(images)
        ```
    """

    TERMS = LOSS_TERMS
    WEIGHTS = ("unlabeled_weight", "lc_weight")
    LOSS_DESCRIPTION = "cross-entropy + λu pseudo-label cross-entropy + λ2 Local Clustering"
    TEACHER_COPIES_STATISTICS = True

    def __init__(
        self,
        student: keras.Model,
        augmentation,
        strong_augmentation: StrongAugmentation | None = None,
        threshold: float = 0.95,
        ema_decay: float = 0.999,
        **kwargs,
    ):
        super().__init__(student, augmentation, ema_decay=ema_decay, **kwargs)
        owner = type(self).__name__
        self.threshold = in_range(owner, "threshold", threshold, 0.0, 1.0, high_open=False)
        if strong_augmentation is None:
            strong_augmentation = StrongAugmentation.matching(augmentation)
        if not isinstance(strong_augmentation, StrongAugmentation):
            raise UserInputError(
                f"{owner}: strong_augmentation must be an lcmt_tf.StrongAugmentation, not "
                f"{type(strong_augmentation).__name__}"
            )
        if strong_augmentation.mean != augmentation.mean or (
            strong_augmentation.std != augmentation.std
        ):
            raise UserInputError(
                f"{owner}: the strong augmentation normalizes with another mean and std than "
                "the augmentation; build it with StrongAugmentation.matching(augmentation)"
            )
        self.strong_augmentation = strong_augmentation

    def augmentations(self) -> list[keras.layers.Layer]:
        # While SemiSupervisedModel.__init__ runs, the strong view does not exist yet.
        strong = getattr(self, "strong_augmentation", None)
        return [self.augmentation] + ([strong] if strong is not None else [])

    def views_and_outputs(self, data):
        """The step's forward pass: (features, logits, number of labeled images, number
        of unlabeled images) of the student over [labeled weak views, unlabeled weak
        views, unlabeled strong views], in that order, and the labeled weak views."""
        images, num_labeled = self.joined_images(data)
        unlabeled_images = images[num_labeled:]
        num_unlabeled = ops.shape(unlabeled_images)[0]
        weak = self.augmentation(images, training=True)
        strong = self.strong_augmentation(unlabeled_images, training=True)
        groups = [weak[:num_labeled], weak[num_labeled:], strong]
        features, logits = self.grouped_outputs(self.student, groups)
        return features, logits, num_labeled, num_unlabeled, groups[0]

    def compute_losses(self, data):
        """One training forward pass over the batch dict `data`.

        Returns:
            (loss, terms, labeled_logits): the scalar loss
                CE + lambda_u * pseudo-label CE + lambda2 * LC; `terms`, a dict with a
                scalar for every name in LOSS_TERMS (and LC_TERMS with Local
                Clustering); and the `LabeledLogits` (the EMA model's on the labeled
                weak views, in inference mode).
        """
        data = training_batch(data)
        labels = data["labels"]
        features, logits, num_labeled, num_unlabeled, labeled_views = self.views_and_outputs(data)
        num_weak = num_labeled + num_unlabeled
        labeled_logits = ops.cast(logits[:num_labeled], "float32")
        ce = self.cross_entropy(labels, labeled_logits)
        unlabeled, mask_rate = pseudo_label_cross_entropy(
            logits[num_weak:], logits[num_labeled:num_weak], self.threshold
        )
        weak_features = features[:num_weak]
        lc, neighbor_fraction, lc_terms = self.local_clustering_terms(weak_features, num_labeled)
        loss = self.with_local_clustering(ce + self.unlabeled_weight * unlabeled, lc)
        _, ema_logits = student_outputs(self.teacher(labeled_views, training=False), "teacher")
        terms = {
            "loss": loss,
            "ce": ce,
            "unlabeled": unlabeled,
            "mask_rate": mask_rate,
            "lc": lc,
            "lc_neighbor_fraction": neighbor_fraction,
            "feature_spread": feature_spread(weak_features),
            "prediction_balance": prediction_balance(logits[:num_weak]),
            "unlabeled_weight": ops.convert_to_tensor(self.unlabeled_weight),
            "lc_weight": ops.convert_to_tensor(self.lc_weight),
            **lc_terms,
        }
        ema_logits = ops.stop_gradient(ops.cast(ema_logits, "float32"))
        return loss, terms, LabeledLogits(labels, labeled_logits, ema_logits)

    def lc_pair_distances(self, data):
        """The distances LC's mask acts on for the batch dict `data`, as the training
        step computes them (the weak views' features, from the step's forward pass),
        flattened; it updates batch-norm statistics and random states like a step."""
        features, _, num_labeled, num_unlabeled, _ = self.views_and_outputs(training_batch(data))
        blocks = self.global_lc_distances(features[: num_labeled + num_unlabeled], num_labeled)
        return ops.concatenate([ops.reshape(block, (-1,)) for block in blocks])

    def default_callbacks(self, callbacks: list) -> list:
        """`UnlabeledWeightSchedule()` (FixMatch's lambda_u = 1, constant) when
        `callbacks` has no UnlabeledWeightSchedule."""
        from lcmt_tf.callbacks import UnlabeledWeightSchedule  # callbacks import this module

        if any(isinstance(callback, UnlabeledWeightSchedule) for callback in callbacks):
            return []
        schedule = UnlabeledWeightSchedule()
        log_added(
            schedule,
            f"λu = {schedule.max_weight:g} from the first epoch (FixMatch's); pass "
            "UnlabeledWeightSchedule(...) to change it",
        )
        return [schedule]

    def get_config(self):
        return {
            **super().get_config(),
            "strong_augmentation": keras.saving.serialize_keras_object(self.strong_augmentation),
            "threshold": self.threshold,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["strong_augmentation"] = keras.saving.deserialize_keras_object(
            config["strong_augmentation"]
        )
        return super().from_config(config)
