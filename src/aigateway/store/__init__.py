"""Database access: one shared MetaData, the engine, and Alembic migrations.

Each concern owns its tables in its own `tables.py`; they all register on
`store.metadata.metadata`, and each concern has its own Alembic branch.
"""
