"""How an index version is built and kept in sync with its source.

- ``steps``: the build steps a verb runs: create the version's collection (with the application's
  schema), start and finish its runs, sync a source into it (a full build is a sync into an empty
  version), copy vectors from another version of the same model.
- ``stream``: the local executor, ``Pipeline``: read, diff against the ledger, batch, embed and
  write, on threads, checkpointing every batch in the ledger. The Ray executor, for corpora past
  one machine, is reindexer.raydata; "executor" means only these two.
- ``shadow``: an apply's build of its shadow version: the first pass, then catch-up passes.
- ``incremental``: what keeps a built version in sync: the source it syncs from, a source's
  watermark, its lexical vectors rewritten.
- ``catchup``: the last catch-up before an alias moves: what applications wrote into the live
  version since the target was made reaches the target.
- ``verify``: is a version exactly what its ledger and source say, made by its model?

Which steps run, and when the alias moves (reindexer.swap), is decided by the verbs
(reindexer.commands); what the state records of each step is reindexer.state.
"""
