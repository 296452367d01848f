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
# Every run parameter, with the schema's default (`ecgkeras parameters` lists types and ranges).
data_dir = "data/synthetic-ptbxl"  # a PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records100/...)
architecture = "cnn-bilstm"  # see `ecgkeras architectures`
sampling_rate = 100  # 100 or 500 Hz
label_level = "subclass"  # subclass (23), superclass (5), diagnostic, form, rhythm, all
seed = 0
train_folds = [1, 2, 3, 4, 5, 6, 7, 8]
val_folds = [9]  # early stopping and threshold tuning
test_folds = [10]
bootstrap_resamples = 1000  # test-fold bootstrap for 95% intervals; 0: none
cache_dir = None  # signal cache; None: $ECGKERAS_CACHE or ~/.cache/ecgkeras
# model
filters = [64, 64, 128, 128]
kernel_sizes = [7, 5, 5, 3]
pool_size = 2
rnn_units = 64
rnn_dropout = 0.2
depth = None  # None: the architecture's own number of recurrent layers
rnn_readout = "last"  # last: the final state (the paper's design); pool: average and max over the sequence
head_units = 128
dropout = 0.3
# training
epochs = 30
batch_size = 64
learning_rate = 0.001
loss = "bce"  # bce, weighted_bce or focal
focal_gamma = 2.0
max_pos_weight = 50.0
crop_length = None  # random crops of this many samples while training; None: full records
window_stride = None  # sliding-window stride at evaluation; None: half the crop
patience = 8  # early stopping on validation macro-AUPRC
lr_patience = 3
lr_factor = 0.5
min_learning_rate = 1e-05
global_clipnorm = None  # gradient clipping; measured no help (benchmarks/RESULTS.md)
warmup_epochs = 0  # linear learning-rate warm-up
jit_compile = False  # XLA; measured slower on CPU (benchmarks/RESULTS.md); needs deterministic off
deterministic = True  # deterministic TensorFlow ops: the same seed gives the same metrics
verbose = 2  # Keras: one line per epoch
# where the run record goes
output_dir = "runs/notebook/cnn-bilstm/seed-0"

# %%
import pandas as pd
from IPython.display import Markdown, display

from ecgkeras.report.figures import plot_history
from ecgkeras.runs.record import RunConfig, run_experiment

config = RunConfig.from_parameters(**{name: globals()[name] for name in RunConfig.parameter_names()})

# %% [markdown]
# ## Training
# Keras prints one line per epoch; the best epoch by validation macro-AUPRC is restored.

# %%
run = run_experiment(config, output_dir)
print(f"{run.display_name}: {run.n_parameters:,} parameters, {run.timings['seconds_per_epoch']:.1f} s/epoch, "
      f"best epoch {run.timings['best_epoch']} of {run.timings['epochs_run']}")

# %%
plot_history(run.history);

# %% [markdown]
# ## Test-fold metrics
# Two threshold policies: a fixed 0.5, and per-class thresholds tuned on the validation fold.
# Macro AUROC/AUPRC average over the classes with positives in the test fold.

# %%
headline = ["hamming_loss", "macro_auprc", "micro_f1", "subset_accuracy", "macro_auroc", "macro_f1",
            "micro_precision", "micro_recall", "n_classes_scored"]
display(pd.DataFrame({policy: {name: run.metrics("test", policy)[name] for name in headline}
                      for policy in ("tuned", "fixed")}).round(4))
display(pd.DataFrame(run.intervals("tuned"), index=["ci95 low", "ci95 high"]).round(4))

# %% [markdown]
# ## Per-class results (test fold, validation-tuned thresholds)

# %%
display(run.per_class("test", "tuned").round(3))
display(Markdown(f"Run record: `{run.run_dir}`"))
