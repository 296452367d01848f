"""`ecgkeras tune`: every architecture given the same Optuna tuning budget on the validation fold.

- `space`: the search space (the schema's `Search` declarations, narrowed or widened by `--space FILE`)
- `layout`: the tuning folder's files and trial folders
- `trials`: one trial as a run record, with per-epoch pruning
- `tune`: the studies, their workers and the budget summary; `tuned_configurations` for `study --from-tuning`
- `analysis`: optimization history and parameter importances, drawn to PNG
"""
