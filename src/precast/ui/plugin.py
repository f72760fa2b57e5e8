"""The Airflow plugin, registered through the `airflow.plugins` entry point (pyproject.toml):
`pip install precast` is enough for an api-server to mount the view at /precast and list it
in the navigation ("precast"). No Flask, no second server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from precast.ui.app import app
from precast.ui.pages import MOUNT


class PrecastPlugin(AirflowPlugin):
    """The precast view: its FastAPI app and its entry in Airflow's navigation."""

    name = "precast"
    fastapi_apps = [{"app": app, "url_prefix": MOUNT, "name": "precast"}]
    external_views = [{"name": "precast", "href": f"{MOUNT.lstrip('/')}/",
                       "url_route": "precast", "destination": "nav"}]
