"""reindexer: put a new embedding model into production on live vector databases."""

__version__ = "0.1.0"


def deploy(*args, **kwargs):
    """Put a newly trained model behind a collection; see ``reindexer.hooks.deploy``."""
    from reindexer.hooks import deploy as _deploy

    return _deploy(*args, **kwargs)


def __getattr__(name: str):
    # `from reindexer import Searcher` without importing the store clients for every `import reindexer`.
    if name in ("Searcher", "SearchHit", "VersionInfo"):
        from reindexer import searcher

        return getattr(searcher, name)
    raise AttributeError(f"module 'reindexer' has no attribute {name!r}")
