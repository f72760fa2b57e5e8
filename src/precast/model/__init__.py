"""Models: the booster and its feature spec, the metrics they are judged by, the MLflow registry."""
