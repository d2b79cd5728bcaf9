"""WSGI entry point of the submission app for gunicorn: ``wsgi:app`` (the Procfile's
``web``). The settings are read here, once, and passed down."""

import settings
from app import create_app

app = create_app(settings.load())
