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
# # Your own ECGs: another dataset, another sampling rate, other lead names
#
# A run trained on PTB-XL reads any 12-lead WFDB record: a `.dat`, or the PhysioNet/CinC
# Challenge's `.mat` + `.hea`, at any sampling rate (resampled to the run's with
# `scipy.signal.resample_poly`), with its leads in any common spelling and order and its samples
# in mV or uV. Every conversion is shown with the prediction. A missing lead is an error: it is
# never filled in. This notebook loads one record of another dataset, predicts, explains, and
# evaluates the run on the whole dataset (its `#Dx` SNOMED-CT codes mapped to PTB-XL's classes).
# The same from the command line: `ecgkeras predict`, `ecgkeras explain`, `ecgkeras evaluate`.

# %% tags=["parameters"]
run_dir = "runs/subset/cnn/seed-0"  # a complete run folder trained on real PTB-XL
data_dir = "data/challenge"  # a folder of Challenge-format records (.hea with #Dx, and .mat)
record = None  # one record in data_dir (without .hea); None: the first one

# %%
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from ecgkeras.data.records import describe_conversions
from ecgkeras.explain import explain_ecg, plot_explanation
from ecgkeras.runs.external import evaluate_external, per_class_frame

record = Path(data_dir) / record if record else sorted(Path(data_dir).rglob("*.hea"))[0].with_suffix("")

# %% [markdown]
# ## One record: prediction and explanation

# %%
explanation = explain_ecg(run_dir, record)
display(Markdown(f"`{record}`: {describe_conversions(explanation.table.attrs['conversions'])}"))
display(explanation.table.head(5))
plot_explanation(explanation)
plt.show()

# %% [markdown]
# ## The whole dataset: external validation
# The run's metrics over the classes both share, at the thresholds it tuned on its own validation
# fold (never on these data). Compare them with the run's test fold: does the result hold here?

# %%
evaluation = evaluate_external(run_dir, data_dir)
display(Markdown(f"{evaluation['n_records']} records, excluded: {evaluation['excluded']}, "
                 f"codes without a PTB-XL counterpart: {len(evaluation['unmapped_codes'])}"))
display({name: round(value, 3) for name, value in evaluation["metrics"]["tuned"].items() if name != "ci95"})
per_class_frame(evaluation, "tuned")
