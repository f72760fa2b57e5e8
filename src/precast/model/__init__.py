"""Models: the booster and its feature spec, training (in process or on Spark), the MLflow
registry."""
