"""A training state written on one backend, read on another (tests/test_torch.py).

    python tests/backend_state.py save STATE.npz
    python tests/backend_state.py resume STATE.npz AGAIN.npz

`save` fits a small MeanTeacher (MT + LC, SGD with momentum) for one epoch and writes
its training state; `resume` builds the same model on the backend in KERAS_BACKEND,
loads that state, writes it again as loaded (AGAIN.npz) and fits one more epoch,
printing the epoch's loss.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

from lcmt_tf.run_dir.checkpoint import load_training_state, save_training_state  # noqa: E402

from conftest import FixedBatches, constant_weights, random_batch, small_mean_teacher  # noqa: E402


def model_and_batches():
    keras.utils.set_random_seed(0)
    model = small_mean_teacher(ema_decay=0.9, lc_epsilon=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.optimizer.build(model.trainable_variables)
    return model, FixedBatches([random_batch(seed=seed) for seed in range(3)])


def fit_one_epoch(model, batches, epoch):
    history = model.fit(
        batches, initial_epoch=epoch, epochs=epoch + 1, verbose=0,
        callbacks=constant_weights(1.0, 1.0),
    )  # fmt: skip
    return history.history["loss"][-1]


def main(mode, path, again=None):
    model, batches = model_and_batches()
    if mode == "save":
        fit_one_epoch(model, batches, 0)
        save_training_state(model, path, epoch=1)
        return
    epoch = load_training_state(model, path)
    save_training_state(model, again, epoch=epoch)
    print(f"loss {fit_one_epoch(model, batches, epoch)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
