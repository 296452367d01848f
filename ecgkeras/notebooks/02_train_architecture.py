# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train and evaluate one architecture
#
# One run of the study: a hybrid CNN-RNN (or the CNN baseline) on PTB-XL's 23 diagnostic
# subclasses, trained on folds 1-8, early-stopped and threshold-tuned on fold 9, tested
# on fold 10. `ecgkeras study` runs this notebook once per (architecture, seed) with
# papermill; the cell below holds its parameters.

# %% tags=["parameters"]
data_dir = "data/synthetic-ptbxl"  # a PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records100/...)
sampling_rate = 100  # 100 or 500 Hz
label_level = "subclass"  # subclass (23), superclass (5), diagnostic, form, rhythm, all
architecture = "cnn-bilstm"  # see `ecgkeras architectures`
seed = 0
output_dir = "runs/notebook/cnn-bilstm/seed-0"  # the run record is written here
cache_dir = None  # signal cache; None: $ECGKERAS_CACHE or ~/.cache/ecgkeras
# training
epochs = 30
batch_size = 64
learning_rate = 0.001
loss = "bce"  # bce, weighted_bce or focal
patience = 8  # early stopping on validation macro-AUPRC
lr_patience = 3
crop_length = None  # random crops of this many samples while training; None: full records
jit_compile = False  # XLA; measured slower on CPU (benchmarks/RESULTS.md); needs deterministic off
deterministic = True  # deterministic TensorFlow ops: the same seed gives the same metrics
# model
filters = [64, 64, 128, 128]
kernel_sizes = [7, 5, 5, 3]
rnn_units = 64
rnn_dropout = 0.2
depth = None  # None: the architecture's own number of recurrent layers
head_units = 128
dropout = 0.3
# evaluation
bootstrap_resamples = 1000

# %%
import pandas as pd
from IPython.display import Markdown, display

from ecgkeras.reporting import plot_history
from ecgkeras.runs import RunConfig, run_experiment

config = RunConfig.from_parameters(
    data_dir=data_dir, sampling_rate=sampling_rate, label_level=label_level, architecture=architecture,
    seed=seed, cache_dir=cache_dir, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
    loss=loss, patience=patience, lr_patience=lr_patience, crop_length=crop_length,
    jit_compile=jit_compile, deterministic=deterministic, filters=filters, kernel_sizes=kernel_sizes,
    rnn_units=rnn_units, rnn_dropout=rnn_dropout, depth=depth, head_units=head_units, dropout=dropout,
    bootstrap_resamples=bootstrap_resamples)

# %% [markdown]
# ## Training
# Keras prints one line per epoch; the best epoch by validation macro-AUPRC is restored.

# %%
run = run_experiment(config, output_dir)
print(f"{run.metrics['architecture']['display_name']}: {run.metrics['n_parameters']:,} parameters, "
      f"{run.metrics['timings']['seconds_per_epoch']:.1f} s/epoch, best epoch {run.metrics['timings']['best_epoch']}")

# %%
plot_history(run.history);

# %% [markdown]
# ## Test-fold metrics
# Two threshold policies: a fixed 0.5, and per-class thresholds tuned on the validation fold.
# Macro AUROC/AUPRC average over the classes with positives in the test fold.

# %%
headline = ["hamming_loss", "macro_auprc", "micro_f1", "subset_accuracy", "macro_auroc", "macro_f1",
            "micro_precision", "micro_recall", "n_classes_scored"]
test = run.metrics["metrics"]["test"]
display(pd.DataFrame({policy: {name: test[policy][name] for name in headline} for policy in test}).round(4))
display(pd.DataFrame(test["tuned"]["ci95"], index=["ci95 low", "ci95 high"]).round(4))

# %% [markdown]
# ## Per-class results (test fold, validation-tuned thresholds)

# %%
display(run.per_class("test", "tuned").round(3))
display(Markdown(f"Run record: `{run.run_dir}`"))
