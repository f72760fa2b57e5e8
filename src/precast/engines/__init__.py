"""The engines precast drives: Spark sessions (and the driver's class-data archive),
Beam pipelines, XGBoost on Spark."""
