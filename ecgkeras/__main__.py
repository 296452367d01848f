"""`python -m ecgkeras ...`: the same as the `ecgkeras` command."""

from ecgkeras.cli import main

main()
