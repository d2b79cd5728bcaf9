"""WSGI entry point of the read side for gunicorn: ``wsgi_viewer:viewer`` (the Procfile's
``viewer``). A module of its own so that viewer workers build only the viewer app."""

from app import create_viewer_app

viewer = create_viewer_app()
