"""Entry point of the report viewer for gunicorn: ``wsgi_viewer:viewer`` (the Procfile's
``viewer``, ``gunicorn_viewer.conf.py``). A module of its own so that viewer workers
build only the viewer app."""

import settings
from app import create_viewer_app

viewer = create_viewer_app(settings.load())
