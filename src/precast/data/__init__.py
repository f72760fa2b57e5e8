"""The data a use case brings: its raw events' mapping onto clean columns, and the datasets
contract between the steps."""
