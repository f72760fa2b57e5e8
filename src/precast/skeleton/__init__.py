"""The use-case skeleton that `precast init DIR` writes (config, SQL, suites), as files."""
