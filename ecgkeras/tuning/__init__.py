"""`ecgkeras tune`: every architecture given the same Optuna tuning budget on the validation fold.

- `space`: the search space (the schema's `Search` declarations, narrowed or widened by `--space FILE`)
- `layout`: the tuning folder's files and trial folders
- `settings`: what every architecture's study shares (`tuning.json`), the storage, pruner and sampler
- `trials`: one trial as a run record, with per-epoch pruning
- `worker`: claims and trains trials until each budget (or a shard's share) is spent
- `slurm`: the workers as one SLURM job array
- `tune`: the command, its local workers and the budget summary; `tuned_configurations` for `study --from-tuning`
- `analysis`: optimization history and parameter importances, drawn to PNG
"""
