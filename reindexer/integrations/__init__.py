"""Framework integrations over the Searcher: LangChain and LlamaIndex retrievers.

Each lives in its own module and imports its framework only there, so importing
``reindexer`` (or this package) never imports LangChain or LlamaIndex:

- ``reindexer.integrations.langchain``: ``ReindexerRetriever`` and the read-only
  ``ReindexerVectorStore`` (``pip install 'reindexer[langchain]'``);
- ``reindexer.integrations.llamaindex``: ``ReindexerRetriever``
  (``pip install 'reindexer[llamaindex]'``);
- ``reindexer.integrations.llamaindex_milvus``: ``open_milvus_vector_store``, LlamaIndex's
  own Milvus store reopened by a name that ``reindex migrate`` turned into an alias.

Both resolve the logical collection through a ``reindexer.Searcher``, so every
answer comes wholly from one index version, encoded by that version's own model,
and they follow cut-overs and rollbacks without a restart.
"""
