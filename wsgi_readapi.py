"""Entry point of the v3 read API for gunicorn: ``wsgi_readapi:read_api`` (the Procfile's
``readapi``, ``gunicorn_readapi.conf.py``). A module of its own so that read-API workers
build only the read-API app."""

import settings
from app import create_read_api_app

read_api = create_read_api_app(settings.load())
