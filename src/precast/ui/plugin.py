"""The Airflow plugin, registered through the `airflow.plugins` entry point (pyproject.toml):
`pip install precast` is enough for an api-server to mount the view at /precast and list it
in the navigation ("precast"). No Flask, no second server.

Every Airflow process loads the plugins (each task runner does, for listeners), and only
the api-server serves the view: this module imports nothing but Airflow's plugin class, and
the view's app (FastAPI, the store, the pages) is imported on its first request.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from precast.ui import MOUNT


class _View:
    """The ASGI app Airflow mounts: precast.ui.app.app, imported on the first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from precast.ui.app import app

            self._app = app
        await self._app(scope, receive, send)


class PrecastPlugin(AirflowPlugin):
    """The precast view: its app and its entry in Airflow's navigation."""

    name = "precast"
    fastapi_apps = [{"app": _View(), "url_prefix": MOUNT, "name": "precast"}]
    external_views = [{"name": "precast", "href": f"{MOUNT.lstrip('/')}/",
                       "url_route": "precast", "destination": "nav"}]
