/**
 * The SQLite schema, as numbered migrations. `PRAGMA user_version` records how far a database
 * has come; each migration runs in a transaction with its version bump, so a crash leaves a
 * database at one version or the next, never between. ONLY APPEND MIGRATIONS.
 */

export const MIGRATIONS: readonly string[] = [
  // 1: nodes (live and tombstones), the per-owner op log, how far each owner is applied, series.
  `
  CREATE TABLE nodes (
    id       TEXT PRIMARY KEY,
    type     TEXT NOT NULL,
    parent   TEXT,
    owner    TEXT NOT NULL,
    name     TEXT NOT NULL,
    meta     TEXT NOT NULL,
    value    TEXT,
    hlc      TEXT NOT NULL,
    version  INTEGER NOT NULL,
    deleted  INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID;
  CREATE INDEX nodes_parent ON nodes (parent);
  CREATE INDEX nodes_owner ON nodes (owner, version);

  CREATE TABLE ops (
    owner  TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (owner, seq)
  ) WITHOUT ROWID;

  CREATE TABLE owners (
    owner      TEXT PRIMARY KEY,
    applied    INTEGER NOT NULL,
    log_floor  INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE series (
    node_id  TEXT NOT NULL,
    t        INTEGER NOT NULL,
    value    TEXT NOT NULL
  );
  CREATE INDEX series_node_t ON series (node_id, t);
  `,
  // 2: API keys made through the API (their SHA-256 digests; the keys themselves are not kept).
  `
  CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    digest      TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 3: nodes_owner without the version. Nothing looks nodes up by version, and with it in the
  // index every value op moved an index entry: a page more written for every reading.
  `
  DROP INDEX nodes_owner;
  CREATE INDEX nodes_owner ON nodes (owner);
  `,
  // 4: servers retired from the mesh (src/replication/retirement.ts): a grow-only set.
  `
  CREATE TABLE retired (
    id    TEXT PRIMARY KEY,
    name  TEXT NOT NULL,
    by    TEXT NOT NULL,
    at    TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 5: the peers known at the last save (mesh/peer-table.ts SavedPeer, as JSON), so that a
  // restarted server lists and dials them before it hears from them again.
  `
  CREATE TABLE known_peers (
    id    TEXT PRIMARY KEY,
    body  TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 6: the stamp of each owner's last applied op, kept when the log is compacted, so that two
  // servers can always compare what they hold of an owner (replicator.ts `#stampOf`).
  `
  ALTER TABLE owners ADD COLUMN head_hlc TEXT;
  `,
  // 7: the seq of the owner's op each reading came with (NULL for readings from before), so that a
  // server fetching the readings a snapshot could not carry gets those of its ops only
  // (replicator.ts "Readings a snapshot could not carry").
  `
  ALTER TABLE series ADD COLUMN seq INTEGER;
  `,
  // 8: the readings still to fetch after snapshots, a row per owner's data point and snapshot, in
  // the order they are fetched (rowid): kept so that a restart goes on with them.
  `
  CREATE TABLE backfill (
    owner   TEXT NOT NULL,
    node_id TEXT NOT NULL,
    from_t  INTEGER NOT NULL,
    to_t    INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    next_t  INTEGER NOT NULL,
    UNIQUE (owner, node_id, seq)
  );
  `,
];
