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
# # How much temporal modeling is enough? Study summary
#
# Reads every complete run record under a study folder (nothing is retrained) and writes
# the paper-style tables and figures to the summary folder: test-fold metrics per
# architecture (mean ± std over seeds, best value in bold) for both threshold policies,
# per-class recall, performance against complexity, a seed-aware paired comparison of
# every architecture against the best one (Holm-adjusted), and the verdict they give.

# %% tags=["parameters"]
study_dir = "runs/demo"  # a folder written by `ecgkeras study`
summary_dir = None  # None: <study_dir>/summary
bootstrap_resamples = 1000  # paired bootstrap resamples of the test records

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from ecgkeras.report.summary import write_summary
from ecgkeras.report.tables import reference_table

summary = Path(write_summary(study_dir, summary_dir, bootstrap_resamples=bootstrap_resamples))
show = lambda stem: display(Markdown((summary / f"{stem}.md").read_text()))

# %%
show("verdict")

# %% [markdown]
# ## Test-fold results, validation-tuned thresholds

# %%
show("results_tuned")

# %% [markdown]
# ## Test-fold results, fixed threshold 0.5

# %%
show("results_fixed")

# %% [markdown]
# ## Published reference points
# Jafari & Jafari (2026), best model CNN-BiLSTM; PTB-XL benchmark (Strodthoff et al. 2020) macro-AUROC.

# %%
display(reference_table())

# %% [markdown]
# ## Per-class recall

# %%
display(Image(summary / "recall_heatmap.png"))
display(Image(summary / "recall_bars.png"))

# %% [markdown]
# ## Performance against complexity

# %%
display(Image(summary / "complexity.png"))

# %% [markdown]
# ## Does more temporal modeling help beyond noise?
# Test fold, all seeds: each architecture minus the best one per metric, 95% intervals holding the
# seed-to-seed and the test-record variation, p-values Holm-adjusted per metric.

# %%
show("paired_comparison")
display(Image(summary / "paired_comparison.png"))
display(Markdown(f"All tables (Markdown, CSV, LaTeX) and figures (PNG, PDF): `{summary}`"))
