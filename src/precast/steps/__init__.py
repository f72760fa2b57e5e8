"""One module per pipeline step: pure functions plus one run(cfg, ...)."""
