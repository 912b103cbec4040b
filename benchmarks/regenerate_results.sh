#!/usr/bin/env bash
# Every measured file under docs/results/ and every figure under docs/figures/, made again
# from this checkout with the commands the documentation shows, in the order they build
# on each other (the sweeps, curves and t-SNE reuse the table's runs). Each output records
# its command and software (with the git commit: run it from a clean checkout).
#
#     bash benchmarks/regenerate_results.sh            # what the docs cite: tables sweeps
#                                                      #   figures tune
#     bash benchmarks/regenerate_results.sh tables     # or some of them; also timings, best
#                                                      #   on an otherwise idle machine:
#                                                      #   fixmatch speed lc_scaling folder_cache labeling
#                                                      #   distributed
#
# The tables, sweeps, figures and tuning study took 2 h 17 min on 2 CPU cores that also ran
# test suites. Runs go
# to $RUNS (default runs/regenerate); the folder cache reads $CIFAR10, a folder of CIFAR-10
# images (train/<class>/, test/<class>/; no default).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/regenerate}
CIFAR10=${CIFAR10:-}
PYTHON=${PYTHON:-python}
OUT=docs/results
FIGURES=docs/figures
export TF_CPP_MIN_LOG_LEVEL=2
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tables sweeps figures tune)
wanted() { [[ " ${parts[*]} " == *" $1 "* ]]; }
lcmt() { "$PYTHON" -m lcmt_tf.cli.main "$@"; }
say() { echo "== $* ($(date +%T))"; }

if wanted tables; then
    say "digits tables"
    lcmt experiment table --settings=digits --methods=supervised,mt,mtlc --seeds=0-4 \
        --root="$RUNS/digits_experiment" --fork --parallel=2
    cp "$RUNS/digits_experiment/table.json" "$OUT/digits_experiment_table.json"
    cp "$RUNS/digits_experiment/table.md" "$OUT/digits_experiment_table.md"
    lcmt experiment table --settings=digits --methods=supervised,mt,mtlc --seeds=0-4 \
        --root="$RUNS/digits_decoupled" --set=weight_decay_mode=decoupled --fork --parallel=2
    cp "$RUNS/digits_decoupled/table.json" "$OUT/digits_decoupled_table.json"
    cp "$RUNS/digits_decoupled/table.md" "$OUT/digits_decoupled_table.md"
fi

if wanted sweeps; then
    R="$RUNS/digits_experiment"
    for sweep in "lc_epsilon 0,0.03,0.1,0.3,1" "lc_weight 0,1,3,10,30" \
        "lc_epsilon_quantile 0,0.05,0.1,0.25"; do
        set -- $sweep
        say "sweep of $1"
        lcmt experiment sweep --setting=digits --param="$1" --values="$2" --seeds=0-4 \
            --root="$R" --fork --parallel=2 --output="$R/sweep_$1"
        cp "$R/sweep_$1.json" "$OUT/digits_sweep_$1.json"
        cp "$R/sweep_$1.md" "$OUT/digits_sweep_$1.md"
        cp "$R/sweep_$1.png" "$FIGURES/digits_sweep_$1.png"
    done
fi

if wanted figures; then
    say "curves and t-SNE"
    lcmt experiment curves --setting=digits --root="$RUNS/digits_experiment"
    cp "$RUNS/digits_experiment/digits/curves.json" "$OUT/digits_curves.json"
    cp "$RUNS/digits_experiment/digits/curves.png" "$FIGURES/digits_curves.png"
    lcmt experiment tsne --setting=digits --root="$RUNS/digits_experiment"
    cp "$RUNS/digits_experiment/digits/tsne_train.png" "$FIGURES/digits_tsne_train.png"
    cp "$RUNS/digits_experiment/digits/tsne_test.png" "$FIGURES/digits_tsne_test.png"
fi

if wanted tune; then
    say "the tuning study (docs/confirmation-bias.md)"
    lcmt experiment tune --setting=digits --root="$RUNS/digits_tune" --fork \
        --set=validation_fraction=0.2 --space=lc_weight=log:1:30 \
        --space=lc_epsilon_batch_quantile=float:0.01:0.3 '--space=lc_start_epoch=choice:20|40|60' \
        '--space=lc_self_pairs=choice:true|false' --trials=16 --tune_seeds=0-1 --seeds=10-19 \
        --parallel=2
    cp "$RUNS/digits_tune/digits/tune/tune.json" "$OUT/digits_tune.json"
    cp "$RUNS/digits_tune/digits/tune/tune.md" "$OUT/digits_tune.md"
    cp "$RUNS/digits_tune/digits/tune/confirm/bias.json" "$OUT/digits_tune_bias.json"
    cp "$RUNS/digits_tune/digits/tune/confirm/bias.png" "$FIGURES/digits_tune_bias.png"
fi

if wanted fixmatch; then
    say "FixMatch and FixMatch + LC on digits (docs/results.md)"
    lcmt experiment table --settings=digits_fixmatch --seeds=0-4 --fork \
        --root="$RUNS/digits_fixmatch" --parallel=2
    cp "$RUNS/digits_fixmatch/table.json" "$OUT/digits_fixmatch_table.json"
    cp "$RUNS/digits_fixmatch/table.md" "$OUT/digits_fixmatch_table.md"
    lcmt experiment bias --setting=digits_fixmatch --root="$RUNS/digits_fixmatch"
    cp "$RUNS/digits_fixmatch/digits_fixmatch/bias.json" "$OUT/digits_fixmatch_bias.json"
    say "the tuned FixMatch + LC study (docs/results.md)"
    tuned="$RUNS/fixmatch_tune/digits_fixmatch/tune"
    lcmt experiment tune --setting=digits_fixmatch --root="$RUNS/fixmatch_tune" --fork \
        --set=validation_fraction=0.2 --space=lc_weight=log:0.1:10 \
        --space=lc_epsilon_batch_quantile=float:0.01:0.3 '--space=lc_start_epoch=choice:20|40|60' \
        --trials=16 --tune_seeds=0-1 --seeds=10-19 --parallel=2
    lcmt experiment table --settings=digits --seeds=10-19 --fork --root="$RUNS/mt_seeds_10_19" \
        --set=validation_fraction=0.2 --parallel=2
    cp "$tuned/tune.json" "$OUT/digits_fixmatch_tune.json"
    cp "$tuned/tune.md" "$OUT/digits_fixmatch_tune.md"
    cp "$tuned/confirm/bias.json" "$OUT/digits_fixmatch_tune_bias.json"
    chosen=$("$PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['best']['number'])" \
        "$tuned/tune.json")
    "$PYTHON" benchmarks/paired_runs.py --treated="$tuned/trial_$chosen" \
        --treated_name="FixMatch + LC (trial $chosen)" --control="$tuned/mt" --control_name=FixMatch \
        --metric=teacher_validation_error --output="$OUT/digits_fixmatch_tune_validation.json"
    "$PYTHON" benchmarks/paired_runs.py --treated="$tuned/confirm/mt" --treated_name=FixMatch \
        --control="$RUNS/mt_seeds_10_19/digits/mt" --control_name="Mean Teacher" \
        --output="$OUT/digits_fixmatch_vs_mt.json"
fi

if wanted speed; then
    say "the authors' network and passes"
    for cfg in "conv_large joint" "conv_large_wn joint" "conv_large_wn separate"; do
        set -- $cfg
        lcmt benchmark --backend=tensorflow --model="$1" --forward_passes="$2" --modes=mt,mtlc \
            --steps=2 --warmup_steps=1 --repeats=5 --output="$OUT/cpu_tf_${1}_${2}.json"
    done
fi

if wanted lc_scaling; then
    say "Local Clustering on large batches"
    lcmt benchmark --lc_only --batch_sizes=160,1024,4096,8192 --repeats=5 \
        --output="$OUT/cpu_lc_scaling_auto.json"
    lcmt benchmark --lc_only --lc_distance=difference --batch_sizes=160,1024,2048 \
        --repeats=5 --output="$OUT/cpu_lc_scaling_difference.json"
    KERAS_BACKEND=jax lcmt benchmark --backend=jax --lc_only \
        --batch_sizes=160,1024,4096,8192 --repeats=5 --output="$OUT/cpu_lc_scaling_auto_jax.json"
fi

if wanted folder_cache; then
    [ -n "$CIFAR10" ] || { echo "folder_cache: set CIFAR10 to a folder of CIFAR-10 images" >&2; exit 2; }
    say "the folder cache on CIFAR-10"
    "$PYTHON" benchmarks/folder_cache.py --dataset="folder:$CIFAR10" \
        --output="$OUT/cpu_folder_cache.json"
fi

if wanted labeling; then
    say "what the ranking buys"
    "$PYTHON" benchmarks/labeling_value.py --seeds=0-4 --output="$OUT/cpu_labeling_value.json"
fi

if wanted distributed; then
    say "data-parallel training on the CPU"
    "$PYTHON" benchmarks/data_parallel_scaling.py --output="$OUT/data_parallel_cpu"
    "$PYTHON" benchmarks/data_parallel_scaling.py --epochs=100 --modes=none \
        --output="$OUT/data_parallel_cpu_100_epochs_none"
    "$PYTHON" benchmarks/data_parallel_scaling.py --epochs=100 --modes=multi_worker \
        --output="$OUT/data_parallel_cpu_100_epochs"
fi
say "done"
