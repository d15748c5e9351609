"""reindexer: put a new embedding model into production on live vector databases."""

__version__ = "0.1.0"
