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
# Run parameters by name: any of `ecgkeras parameters` (types, defaults, ranges); the others keep
# their defaults. `ecgkeras study` passes each run's whole planned configuration here.
parameters = {"data_dir": "data/synthetic-ptbxl", "architecture": "cnn-bilstm", "epochs": 30}
output_dir = "runs/notebook/cnn-bilstm/seed-0"  # where the run record goes

# %%
import pandas as pd
from IPython.display import Markdown, display

from ecgkeras.evaluation import HEADLINE_METRICS
from ecgkeras.report.figures import plot_history
from ecgkeras.runs import POLICIES, TUNED, RunConfig, run_experiment

config = RunConfig.from_parameters(**parameters)

# %% [markdown]
# ## Training
# Keras prints one line per epoch; the best epoch by validation macro-AUPRC is restored.

# %%
run = run_experiment(config, output_dir)
print(f"{run.display_name}: {run.n_parameters:,} parameters, {run.timings['seconds_per_epoch']:.1f} s/epoch, "
      f"best epoch {run.convergence['best_epoch']} of {run.convergence['epochs_run']}")

# %%
plot_history(run.history);

# %% [markdown]
# ## Test-fold metrics
# Two threshold policies: a fixed 0.5, and per-class thresholds tuned on the validation fold.
# Macro AUROC/AUPRC average over the classes with positives in the test fold.

# %%
headline = [*HEADLINE_METRICS, "micro_precision", "micro_recall", "n_classes_scored"]
display(pd.DataFrame({policy: {name: run.metrics("test", policy)[name] for name in headline}
                      for policy in POLICIES}).round(4))
display(pd.DataFrame(run.intervals(TUNED), index=["ci95 low", "ci95 high"]).round(4))

# %% [markdown]
# ## Per-class results (test fold, validation-tuned thresholds)

# %%
display(run.per_class("test", TUNED).round(3))
display(Markdown(f"Run record: `{run.run_dir}`"))
