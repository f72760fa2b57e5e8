"""The engines precast drives: Spark sessions (and the local driver's class-data archive)
and Beam pipelines."""
