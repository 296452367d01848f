"""One run: its configuration, the experiment, its record on disk."""
