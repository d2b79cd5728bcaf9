"""Entry point of the read side for gunicorn: ``wsgi_viewer:viewer`` (the Procfile's
``viewer``), an ASGI app served by uvicorn's gunicorn worker (``gunicorn_viewer.conf.py``).
A module of its own so that viewer workers build only the viewer app."""

from app import create_viewer_app
from app.viewer_front import ViewerFront

viewer = ViewerFront(create_viewer_app())
