"""precast inside the Airflow UI: an Airflow 3 plugin (precast.ui.plugin) whose FastAPI app
(precast.ui.app) shows every use case's champion, served snapshot, runs, reports, validation
results, metric trends and alerts, and starts the audited rollback and promote DAGs."""

MOUNT = "/precast"  # where Airflow's api-server mounts the view
