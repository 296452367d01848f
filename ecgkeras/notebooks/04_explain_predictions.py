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
# # Where does the model look? Explaining predictions on the 12 leads
#
# A trained run rates each of PTB-XL's 23 diagnostic subclasses for a record. This notebook
# shows, for a few real test-fold records, *which samples of which leads* raised the
# probability of the predicted classes: the evidence is shaded behind each lead.
# The attribution method is integrated gradients, the most faithful of the methods measured
# in `benchmarks/RESULTS.md` ("Explanations"). The same figures come from the command line:
# `ecgkeras explain --run RUN_DIR RECORD`.
#
# You need a run trained on real ECGs, for example on the PTB-XL subset:
# `ecgkeras study --data-dir ../shared/ptbxl --out runs/subset --architectures cnn`.

# %% tags=["parameters"]
run_dir = "runs/subset/cnn/seed-0"  # a complete run folder trained on real PTB-XL
data_dir = "../shared/ptbxl"  # the PTB-XL folder holding the records below
# test-fold (fold 10) records: normal, inferior MI, complete LBBB, complete RBBB + LAFB
records = ["records100/00000/00009_lr", "records100/00000/00210_lr", "records100/00000/00180_lr",
           "records100/00000/00172_lr"]
classes = None  # None: each record's predicted classes; or names, e.g. ["IMI", "CLBBB"]
method = None  # None: the default; or "integrated_gradients", "gradient_x_input", "grad_cam"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from ecgkeras.data.ptbxl import read_database
from ecgkeras.explain import explain_ecg, plot_explanation
from ecgkeras.runs.record import load_run

run = load_run(run_dir)
database = read_database(data_dir).set_index("filename_lr")
display(Markdown(f"Run `{run_dir}`: {run.config.architecture}, seed {run.config.seed}, "
                 f"{len(run.classes)} classes, trained on `{run.config.data_dir}`"))

# %% [markdown]
# ## The records, one by one
# For each record: the cardiologists' SCP codes from `ptbxl_database.csv`, the model's
# probabilities against its validation-tuned thresholds, and the 12 leads with the evidence for
# each explained class. Ask the class: does the shading sit where a cardiologist would look
# (Q waves in II, III, aVF for an inferior MI; broad QRS in V1 and V6 for a bundle branch block)?

# %%
for record in records:
    display(Markdown(f"### `{record}` — labels: `{database.loc[record, 'scp_codes']}`"))
    explanation = explain_ecg(run_dir, Path(data_dir) / record, classes, method)
    display(explanation.table.head(5))
    plot_explanation(explanation)
    plt.show()
