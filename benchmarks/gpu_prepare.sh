#!/usr/bin/env bash
# Prepares what benchmarks/gpu_run.py needs on a lent GPU machine, in git-ignored folders
# that the device tool carries (64 MiB a call, the working tree included):
#   .whl/   wheels of what that machine lacks (it has JAX with CUDA, absl, numpy, scipy,
#           scikit-learn, pillow, h5py, rich, ml-dtypes; not Keras): keras, namex, optree
#           for its Python 3.12, x86-64
#   .data/cifar10_jpeg.npz   the CIFAR-10 JPEG copy (../shared/data/cifar10): every file's
#           bytes in one array, so 60,000 files cost no per-file overhead (about 55 MB)
# Then, with the device tool: run(carry=[".whl", ".data"], command=...) as gpu_run.py's
# docstring shows.
set -euo pipefail
cd "$(dirname "$0")/.."
keras_version=$(python -c "import importlib.metadata as m; print(m.version('keras'))")
rm -rf .whl && mkdir -p .whl .data
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "keras==${keras_version}" namex optree \
    2>&1 | grep -v "^WARNING: Location" || true
if [ ! -f .data/cifar10_jpeg.npz ]; then
    python benchmarks/gpu_run.py --pack=../shared/data/cifar10 --out=.data
fi
du -ch .whl/* .data/cifar10_jpeg.npz | tail -1
git ls-files -z | xargs -0 du -cb | tail -1 | sed 's/total/bytes tracked (they travel too)/'
