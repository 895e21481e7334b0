"""The `datatrace` command: commands, console views, the demo, serving the side-app."""
