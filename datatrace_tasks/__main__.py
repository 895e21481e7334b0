"""`python -m datatrace_tasks` is the `datatrace` command."""

from datatrace_tasks.cli.app import main

main()
