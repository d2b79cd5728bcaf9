"""WSGI entry points for gunicorn: ``wsgi:app`` (intake) and, later, ``wsgi:viewer``."""

from app import create_app

app = create_app()
