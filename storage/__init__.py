"""Storage shared by the web apps, the workers and the scripts: engine, tables, queries.

Importable without Flask. Every function takes a SQLAlchemy connection (or the
engine when it owns the transaction), so callers decide where transactions start.
"""
