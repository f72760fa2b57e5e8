"""The `precast` command: its arguments and commands, `precast check`, and what it prints."""
