"""A study: many runs planned, executed (locally or on SLURM) and tracked."""
