"""The `precast` command: its arguments and commands, and what it prints."""
