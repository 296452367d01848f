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
# # The same tuning budget for every architecture
#
# A classroom-sized `ecgkeras tune`: each architecture gets the same number of Optuna trials, the same
# sampler seed and the same pruner, and is judged on the validation fold only. Every trial is a run
# record under `<study_dir>/tuning/<architecture>/trial-<k>/`; rerunning this notebook continues the
# same studies without retraining finished trials. The default data is synthetic (`ecgkeras synth`).

# %% tags=["parameters"]
data_dir = "data/synthetic-ptbxl"  # a PTB-XL folder (`ecgkeras synth --out data/synthetic-ptbxl`)
study_dir = "runs/tune"  # trials go to <study_dir>/tuning/
architectures = ["cnn", "cnn-gru"]
trials = 6  # per architecture: the equal budget
parameters = {"epochs": 3, "filters": [8, 8, 16, 16], "rnn_units": 8, "head_units": 16, "verbose": 0}  # fixed
pruner = "median"  # median, hyperband or none
sampler_seed = 0

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from ecgkeras.tuning.layout import HISTORY_PLOT, IMPORTANCE_PLOT, tuning_dir
from ecgkeras.tuning.tune import tune

summary = tune(data_dir, study_dir, architectures, trials, parameters, sampler_seed=sampler_seed, pruner=pruner)

# %% [markdown]
# ## Budget spent and the best trial per architecture

# %%
display(pd.DataFrame({name: {**result["trials"], "epochs run": result["epochs_run"],
                             "epochs saved by pruning": result["epochs_saved_by_pruning"],
                             "best validation macro-AUPRC": (result["best"] or {}).get("validation_macro_auprc"),
                             **(result["best"] or {}).get("params", {})}
                      for name, result in summary["architectures"].items()}))

# %% [markdown]
# ## Optimization history and parameter importances
# Next: `ecgkeras study --from-tuning <study_dir> --seeds 0 1 2` trains each best configuration.

# %%
for name in summary["architectures"]:
    for plot in (HISTORY_PLOT, IMPORTANCE_PLOT):
        if (path := tuning_dir(Path(study_dir).resolve()) / name / plot).is_file():
            display(Image(filename=str(path)))
