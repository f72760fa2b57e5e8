"""Airflow: the DAGs' tasks, Params and connections, spark-submit, and Airflow on one machine."""
