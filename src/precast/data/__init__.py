"""The data a use case brings: its raw events' mapping onto clean columns, and `precast check`."""
