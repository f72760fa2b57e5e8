"""Monitoring: feature and score drift, the alerts and model_metrics records, the report."""
