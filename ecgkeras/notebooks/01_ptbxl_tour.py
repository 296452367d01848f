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
# # A tour of PTB-XL
#
# PTB-XL (Wagner et al. 2020) holds 21,799 clinical 12-lead ECGs of 10 s, annotated with
# SCP-ECG statements. This notebook looks at what the models of the study learn from:
# the recommended patient-wise folds, the label hierarchy, class imbalance, label
# co-occurrence and a few example records. It runs on the real data and on the
# synthetic demo copy alike (`ecgkeras synth --out DIR`).

# %% tags=["parameters"]
data_dir = "data/synthetic-ptbxl"  # a PTB-XL folder
sampling_rate = 100  # 100 or 500 Hz
label_level = "subclass"
example_classes = ["NORM", "IMI", "CLBBB", "LVH", "STTC"]  # classes to plot one record of

# %%
from IPython.display import display

from ecgkeras import load_ptbxl
from ecgkeras.report.ecg import plot_ecg
from ecgkeras.report.explore import example_ecgs, fold_counts, label_hierarchy, plot_class_counts, plot_cooccurrence

dataset = load_ptbxl(data_dir, sampling_rate=sampling_rate, label_level=label_level)
print(f"{len(dataset.ecg_ids)} records, {len(dataset.classes)} classes, signals {dataset.X.shape[1:]} "
      f"(time x leads); {dataset.n_dropped} records had no {label_level} label and were dropped")

# %% [markdown]
# ## Folds
# `strat_fold` splits patients into ten folds stratified by labels; the benchmark trains
# on folds 1-8, validates on fold 9 and tests on fold 10 (folds 9 and 10 hold only
# human-validated labels).

# %%
display(fold_counts(dataset))

# %% [markdown]
# ## The label hierarchy
# Each diagnostic SCP code belongs to one of 23 subclasses, and each subclass to one of
# 5 superclasses. A record counts as positive for a class whatever the code's likelihood.

# %%
display(label_hierarchy(data_dir))

# %% [markdown]
# ## Class imbalance
# Normal ECGs dominate; several subclasses have only a few dozen records in all of PTB-XL.

# %%
display(dataset.summary().sort_values("train", ascending=False))
plot_class_counts(dataset);

# %% [markdown]
# ## Co-occurrence
# Multi-label: infarctions come with ST/T changes, hypertrophy with ischemia, and so on.

# %%
plot_cooccurrence(dataset);
print(f"records with more than one {label_level}: {(dataset.Y.sum(axis=1) > 1).mean():.1%}")

# %% [markdown]
# ## Example records
# Clinical layout: 2.5 s of each lead in a 3 x 4 grid and a 10 s rhythm strip of lead II.

# %%
for name, index in example_ecgs(dataset, [c for c in example_classes if c in dataset.classes]).items():
    labels = [c for c, y in zip(dataset.classes, dataset.Y[index]) if y]
    plot_ecg(dataset.X[index], sampling_rate,
             title=f"ecg_id {dataset.ecg_ids[index]}: {', '.join(labels)}");
