-- The state schema of reindexer before migrations: the first release's reindexer/state/models.py
-- (`git show b4b45cd:reindexer/state/models.py`), created by SQLModel.metadata.create_all on a new
-- SQLite file; these are that file's sqlite_master statements. It has no reindex_traffic and no
-- reindex_alembic_version.
CREATE TABLE reindex_audit (
	id INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	user VARCHAR NOT NULL, 
	host VARCHAR NOT NULL, 
	action VARCHAR NOT NULL, 
	collection VARCHAR, 
	plan_fingerprint VARCHAR, 
	result VARCHAR NOT NULL, 
	detail JSON, 
	PRIMARY KEY (id)
);
CREATE TABLE reindex_collection (
	id INTEGER NOT NULL, 
	store_url VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	text_field VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (store_url, name)
);
CREATE TABLE reindex_index_version (
	id INTEGER NOT NULL, 
	collection_id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	physical_name VARCHAR NOT NULL, 
	model_fingerprint VARCHAR NOT NULL, 
	dim INTEGER NOT NULL, 
	metric VARCHAR NOT NULL, 
	index_params JSON, 
	status VARCHAR NOT NULL, 
	plan_id VARCHAR, 
	previous_id INTEGER, 
	point_count INTEGER, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	live_since DATETIME, 
	retired_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (collection_id, version), 
	FOREIGN KEY(collection_id) REFERENCES reindex_collection (id), 
	FOREIGN KEY(model_fingerprint) REFERENCES reindex_model_version (fingerprint)
);
CREATE TABLE reindex_lease (
	resource VARCHAR NOT NULL, 
	holder VARCHAR NOT NULL, 
	token VARCHAR NOT NULL, 
	acquired_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (resource)
);
CREATE TABLE reindex_ledger (
	index_version_id INTEGER NOT NULL, 
	doc_id VARCHAR NOT NULL, 
	content_hash VARCHAR NOT NULL, 
	model_fingerprint VARCHAR NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (index_version_id, doc_id), 
	FOREIGN KEY(index_version_id) REFERENCES reindex_index_version (id)
);
CREATE TABLE reindex_meta (
	"key" VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE reindex_model_version (
	fingerprint VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	path VARCHAR NOT NULL, 
	dim INTEGER NOT NULL, 
	similarity VARCHAR NOT NULL, 
	max_seq_length INTEGER, 
	settings JSON, 
	base_model VARCHAR, 
	train_data VARCHAR, 
	run_id VARCHAR, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (fingerprint)
);
CREATE TABLE reindex_plan (
	id VARCHAR NOT NULL, 
	collection_id INTEGER NOT NULL, 
	inputs_fingerprint VARCHAR NOT NULL, 
	body JSON, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(collection_id) REFERENCES reindex_collection (id)
);
CREATE TABLE reindex_run (
	id INTEGER NOT NULL, 
	plan_id VARCHAR, 
	index_version_id INTEGER NOT NULL, 
	kind VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	embedded INTEGER NOT NULL, 
	deleted INTEGER NOT NULL, 
	copied INTEGER NOT NULL, 
	batches INTEGER NOT NULL, 
	checkpoint JSON, 
	error VARCHAR, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(index_version_id) REFERENCES reindex_index_version (id)
);
CREATE INDEX ix_reindex_audit_at ON reindex_audit (at);
CREATE INDEX ix_reindex_audit_collection ON reindex_audit (collection);
CREATE INDEX ix_reindex_collection_name ON reindex_collection (name);
CREATE INDEX ix_reindex_index_version_collection_id ON reindex_index_version (collection_id);
CREATE INDEX ix_reindex_model_version_name ON reindex_model_version (name);
CREATE INDEX ix_reindex_plan_collection_id ON reindex_plan (collection_id);
CREATE INDEX ix_reindex_run_index_version_id ON reindex_run (index_version_id);
CREATE INDEX ix_reindex_run_plan_id ON reindex_run (plan_id);
