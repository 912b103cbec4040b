"""t-SNE maps of the features of a Mean Teacher and an MT+LC run: the paper's Figures
6 (training set: labeled against unlabeled) and 7 (test set: by class).

The features are the 128-d output of g, the layer Local Clustering acts on, from each
run's final model. Each run directory also gets them for TensorBoard's embedding
projector (`tensorboard --logdir RUN/tensorboard`, "Projector" tab).
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence

import numpy as np

from lcmt_tf.files import atomic_write_json, atomic_write_text
from lcmt_tf.run_dir.layout import run_weights

PROJECTOR_DIR = os.path.join("tensorboard", "projector")


def subsample(count: int, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of at most `max_points` of `count` items, drawn without
    replacement by a generator seeded with `seed` (all of them if they fit)."""
    if count <= max_points:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, max_points, replace=False))


def embed(points: np.ndarray, seed: int) -> np.ndarray:
    """2-d t-SNE of `points` (scikit-learn, PCA initialization, fixed seed)."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(points) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def write_projector(model_dir: str, split: str, vectors: np.ndarray, metadata: dict) -> str:
    """RUN/tensorboard/projector/: `split`'s features and their metadata columns as
    TSV files, which projector_config.pbtxt names."""
    directory = os.path.join(model_dir, PROJECTOR_DIR)
    os.makedirs(directory, exist_ok=True)
    tensors, labels = f"{split}_features.tsv", f"{split}_metadata.tsv"
    atomic_write_text(
        os.path.join(directory, tensors),
        "".join("\t".join(f"{x:.6g}" for x in row) + "\n" for row in vectors),
    )
    columns = list(metadata)
    rows = zip(*(metadata[column] for column in columns))
    atomic_write_text(
        os.path.join(directory, labels),
        "\t".join(columns) + "\n" + "".join("\t".join(map(str, row)) + "\n" for row in rows),
    )
    return directory


def mark_as_tensorboard_run(directory: str) -> None:
    """TensorBoard's projector lists only directories with an event file: write an
    empty one (once) with tensorboard's own writer, if tensorboard is installed."""
    if glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        return
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        logging.warning("tensorboard is not installed: %s is not marked as a run", directory)
        return
    writer = EventFileWriter(directory)
    writer.close()


def projector_config(splits: Sequence[str]) -> str:
    return "".join(
        f'embeddings {{\n  tensor_name: "{split}_features"\n  tensor_path: '
        f'"{split}_features.tsv"\n  metadata_path: "{split}_metadata.tsv"\n}}\n'
        for split in splits
    )


def tsne_figures(
    model_dirs: Sequence[str],
    titles: Sequence[str],
    output_dir: str,
    max_points: int = 2000,
    network: str = "student",
    seed: int = 0,
) -> dict:
    """Writes OUTPUT_DIR/tsne_train.png and tsne_test.png (one panel per run) and
    tsne.json (the subsample and the maps), and each run's projector files."""
    for model_dir in model_dirs:  # every mistake found before a backend starts
        run_weights(model_dir)
    from lcmt_tf.inference import features, load_run
    from lcmt_tf.plots import plot_tsne

    panels: dict[str, list[dict]] = {"train": [], "test": []}
    for model_dir, title in zip(model_dirs, titles):
        trained = load_run(model_dir)
        data = trained.load_data()
        pool_images, pool_labels = data.training_pool()  # unlabeled/ images: label -1
        labeled = np.zeros(len(pool_labels), dtype=bool)
        labeled[trained.labeled_indices()] = True
        splits = {
            "train": (pool_images, pool_labels, labeled),
            "test": (data.x_test, data.y_test, np.zeros(len(data.y_test), dtype=bool)),
        }
        for split, (images, labels, is_labeled) in splits.items():
            chosen = subsample(len(labels), max_points, seed)
            vectors = features(trained.model, images[chosen], network)
            write_projector(
                model_dir,
                split,
                vectors,
                {"label": labels[chosen].tolist(), "labeled": is_labeled[chosen].astype(int)},
            )
            panels[split].append(
                {
                    "title": f"{title} ({network} features, {trained.source})",
                    "model_dir": model_dir,
                    "indices": chosen.tolist(),
                    "points": embed(vectors, seed).tolist(),
                    "labels": labels[chosen].tolist(),
                    "labeled": is_labeled[chosen].tolist(),
                }
            )
        atomic_write_text(
            os.path.join(model_dir, PROJECTOR_DIR, "projector_config.pbtxt"),
            projector_config(splits),
        )
        mark_as_tensorboard_run(os.path.join(model_dir, PROJECTOR_DIR))
    os.makedirs(output_dir, exist_ok=True)
    plot_tsne(panels["train"], os.path.join(output_dir, "tsne_train.png"), color_by="labeled")
    plot_tsne(panels["test"], os.path.join(output_dir, "tsne_test.png"), color_by="class")
    summary = {"network": network, "max_points": max_points, "seed": seed, "panels": panels}
    atomic_write_json(os.path.join(output_dir, "tsne.json"), summary)
    return summary
