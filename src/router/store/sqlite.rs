//! The embedded store: one SQLite file in WAL mode. With `sync: normal` (the default) a committed
//! batch survives any crash of the router process (SIGKILL, OOM kill); `sync: full` also syncs every
//! commit to the disk, so it survives power loss too, at a cost in throughput. The engine's
//! connection never checkpoints the WAL itself: the delivery side does, off the request path.
//! Schema changes are numbered migrations.
//!
//! One router process owns the file: the engine keeps the incident state in memory and commits
//! what each step changed ([`IncidentStore::commit`]). [`IncidentStore::locked_step`] works too (an immediate
//! transaction serializes writers), so the same store contract holds for every backend.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Batch, Claims, IncidentStore, OpenCounts, OutboxEntry, OutboxStore, Recorded, Scope,
    StoreChores, StoreError, StoredEntry, corrupt, from_json, to_json,
};
use crate::router::alert::Millis;
use crate::router::dedup::{Heartbeat, Incident, Member, State};
use crate::router::routing::DestinationId;
use crate::router::silence::{Silence, Silences};

/// Numbered schema migrations; the store applies those not applied yet, in order.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE incidents (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE members (
    incident_key TEXT NOT NULL,
    fingerprint INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (incident_key, fingerprint)
) WITHOUT ROWID;
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seen INTEGER
);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    incident_key TEXT NOT NULL,
    notification TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_incident ON outbox (incident_key);
"#,
    r#"
CREATE INDEX outbox_destination_order ON outbox (destination, state, created_at);
"#,
    r#"
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN lease_until INTEGER;
"#,
    r#"
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    ends_at INTEGER NOT NULL,
    data TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE cluster_heartbeats (
    cluster TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
"#,
];

pub struct SqliteStore {
    conn: Connection,
    claims: Claims,
}

/// How a connection to the store behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Sync every commit to disk (survives power loss), not only to the OS (survives a crash).
    pub sync_full: bool,
    /// Let this connection checkpoint the WAL when it grows (off for the engine's connection).
    pub auto_checkpoint: bool,
}

/// How long a statement waits for another connection's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches the file to WAL. Switching takes an exclusive lock and does not wait on the busy
/// handler, so a connection opening a new file while another one does retries it within the
/// busy timeout (once the file is in WAL mode, the switch is a no-op).
fn use_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.map_err(StoreError::from),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and applies pending migrations.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Io(format!("creating {}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        use_wal(&conn)?;
        conn.pragma_update(
            None,
            "synchronous",
            if options.sync_full { "FULL" } else { "NORMAL" },
        )?;
        if !options.auto_checkpoint {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = SqliteStore {
            conn,
            claims: Claims::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Claims outbox entries as `claims.owner` (default: `local`, the same for every start, so a
    /// restarted router takes over its own claims at once).
    pub fn with_claims(mut self, claims: Claims) -> Self {
        self.claims = claims;
        self
    }

    /// Applies the migrations not applied yet. The version is read inside an immediate
    /// transaction, so connections opening the file together apply each migration once.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        for sql in MIGRATIONS
            .iter()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", current.max(MIGRATIONS.len() as i64))?;
        tx.commit()?;
        Ok(())
    }
}

/// The outbox columns `id, destination, notification, created_at, next_attempt_at, attempts,
/// state, last_error`, in that order.
fn stored_entry(row: &rusqlite::Row) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        id: row.get(0)?,
        destination: row.get(1)?,
        notification: row.get(2)?,
        created_at: row.get(3)?,
        next_attempt_at: row.get(4)?,
        attempts: row.get(5)?,
        state: row.get(6)?,
        last_error: row.get(7)?,
    })
}

/// Incidents that are open or resolving.
const OPEN_SQL: &str = "json_extract(data, '$.status.state') IN ('open', 'resolving')";

fn read_silences(conn: &Connection) -> Result<Silences, StoreError> {
    let mut silences = Silences::new();
    let mut stmt = conn.prepare_cached("SELECT data FROM silences")?;
    for data in stmt.query_map([], |row| row.get::<_, String>(0))? {
        let silence: Silence = from_json(&data?, "silence")?;
        silences.insert(silence.id.clone(), silence);
    }
    Ok(silences)
}

fn read_heartbeat(conn: &Connection) -> Result<Heartbeat, StoreError> {
    let mut clusters = std::collections::BTreeMap::new();
    let mut rows = conn.prepare_cached("SELECT cluster, last_seen FROM cluster_heartbeats")?;
    for row in rows.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })? {
        let (cluster, last_seen) = row?;
        clusters.insert(cluster, last_seen);
    }
    Ok(Heartbeat {
        last_seen: conn
            .query_row("SELECT last_seen FROM heartbeat WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()?
            .flatten(),
        clusters,
    })
}

/// Writes a batch inside the caller's transaction.
fn write_batch(tx: &Connection, batch: &Batch) -> Result<(), StoreError> {
    let mut upsert_silence = tx.prepare_cached("INSERT INTO silences (id, ends_at, data) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at, data = excluded.data")?;
    for silence in &batch.silences {
        upsert_silence.execute(params![
            silence.id,
            silence.ends_at,
            to_json(silence, "silence")?
        ])?;
    }
    let mut upsert_incident = tx.prepare_cached("INSERT INTO incidents (key, data) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET data = excluded.data")?;
    for incident in &batch.incidents {
        upsert_incident.execute(params![incident.key, to_json(incident, "incident")?])?;
    }
    let mut upsert_member = tx.prepare_cached(
        "INSERT INTO members (incident_key, fingerprint, data) VALUES (?1, ?2, ?3) ON CONFLICT (incident_key, fingerprint) DO UPDATE SET data = excluded.data",
    )?;
    for (key, fingerprint, member) in &batch.members {
        upsert_member.execute(params![
            key,
            *fingerprint as i64,
            to_json(member, "member")?
        ])?;
    }
    for key in &batch.forgotten_incidents {
        tx.execute("DELETE FROM members WHERE incident_key = ?1", params![key])?;
        tx.execute("DELETE FROM incidents WHERE key = ?1", params![key])?;
    }
    if let Some(last_seen) = batch.heartbeat.as_ref().and_then(|h| h.last_seen) {
        tx.execute(
            "INSERT INTO heartbeat (id, last_seen) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET \
             last_seen = CASE WHEN heartbeat.last_seen IS NULL OR excluded.last_seen > heartbeat.last_seen \
             THEN excluded.last_seen ELSE heartbeat.last_seen END",
            params![last_seen],
        )?;
    }
    let mut upsert_cluster = tx.prepare_cached(
        "INSERT INTO cluster_heartbeats (cluster, last_seen) VALUES (?1, ?2) ON CONFLICT (cluster) DO UPDATE SET \
         last_seen = MAX(cluster_heartbeats.last_seen, excluded.last_seen)",
    )?;
    for (cluster, last_seen) in batch.heartbeat.iter().flat_map(|h| &h.clusters) {
        upsert_cluster.execute(params![cluster, last_seen])?;
    }
    // An entry planned twice (same idempotency key) is stored once.
    let mut insert_entry = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (id, destination, incident_key, notification, created_at, next_attempt_at, attempts, state, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for entry in &batch.outbox {
        insert_entry.execute(params![
            entry.id,
            entry.destination.to_string(),
            entry.notification.incident_key,
            to_json(&entry.notification, "notification")?,
            entry.created_at,
            entry.next_attempt_at,
            entry.attempts,
            entry.state.as_str(),
            entry.last_error,
        ])?;
    }
    Ok(())
}

const ENTRY_COLUMNS: &str =
    "id, destination, notification, created_at, next_attempt_at, attempts, state, last_error";

impl IncidentStore for SqliteStore {
    fn load_state(&mut self) -> Result<State, StoreError> {
        let mut state = State::default();
        let mut stmt = self.conn.prepare("SELECT data FROM incidents")?;
        for data in stmt.query_map([], |row| row.get::<_, String>(0))? {
            let incident: Incident = from_json(&data?, "incident")?;
            state.incidents.insert(incident.key.clone(), incident);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT incident_key, fingerprint, data FROM members")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (key, fingerprint, data) = row?;
            let member: Member = from_json(&data, "member")?;
            if let Some(incident) = state.incidents.get_mut(&key) {
                incident.members.insert(fingerprint as u64, member);
            }
        }
        state.heartbeat = read_heartbeat(&self.conn)?;
        state.silences = read_silences(&self.conn)?;
        Ok(state)
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        write_batch(&tx, batch)?;
        tx.commit()?;
        Ok(())
    }

    fn locked_step(
        &mut self,
        scope: &Scope,
        decide: &mut dyn FnMut(&mut State) -> Batch,
    ) -> Result<(), StoreError> {
        // An immediate transaction holds the write lock from the start: nobody else writes
        // between loading and committing.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut state = State::default();
        {
            let mut by_key = tx.prepare_cached("SELECT data FROM incidents WHERE key = ?1")?;
            let mut keys: Vec<&String> = scope.keys.iter().collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if let Some(data) = by_key
                    .query_row(params![key], |row| row.get::<_, String>(0))
                    .optional()?
                {
                    let incident: Incident = from_json(&data, "incident")?;
                    state.incidents.insert(incident.key.clone(), incident);
                }
            }
            if scope.open {
                let mut open =
                    tx.prepare_cached(&format!("SELECT data FROM incidents WHERE {OPEN_SQL}"))?;
                for data in open.query_map([], |row| row.get::<_, String>(0))? {
                    let incident: Incident = from_json(&data?, "incident")?;
                    state.incidents.insert(incident.key.clone(), incident);
                }
            }
            let mut members =
                tx.prepare_cached("SELECT fingerprint, data FROM members WHERE incident_key = ?1")?;
            for (key, incident) in state.incidents.iter_mut() {
                for row in members.query_map(params![key], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })? {
                    let (fingerprint, data) = row?;
                    let member: Member = from_json(&data, "member")?;
                    incident.members.insert(fingerprint as u64, member);
                }
            }
            if scope.heartbeat {
                state.heartbeat = read_heartbeat(&tx)?;
            }
            state.silences = read_silences(&tx)?;
        }
        let batch = decide(&mut state);
        write_batch(&tx, &batch)?;
        tx.commit()?;
        Ok(())
    }

    fn open_counts(&mut self) -> Result<OpenCounts, StoreError> {
        let (incidents, firing_members): (i64, i64) = self.conn.query_row(
            &format!(
                "SELECT (SELECT COUNT(*) FROM incidents WHERE {OPEN_SQL}), \
                 (SELECT COUNT(*) FROM members m JOIN incidents i ON i.key = m.incident_key \
                  WHERE json_extract(m.data, '$.firing') AND {})",
                OPEN_SQL.replace("data", "i.data")
            ),
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(OpenCounts {
            incidents: incidents as u64,
            firing_members: firing_members as u64,
        })
    }
}

impl OutboxStore for SqliteStore {
    fn due(
        &mut self,
        now: Millis,
        limit: usize,
        in_flight: &BTreeSet<String>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let skip = serde_json::to_string(in_flight).map_err(|e| corrupt("in-flight ids", e))?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "UPDATE outbox SET claimed_by = ?3, lease_until = ?1 + ?4 WHERE id IN ( \
               SELECT id FROM outbox o WHERE state = 'pending' AND next_attempt_at <= ?1 \
               AND (lease_until IS NULL OR lease_until <= ?1 OR claimed_by = ?3) \
               AND id NOT IN (SELECT value FROM json_each(?5)) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.destination = o.destination AND p.state = 'pending' \
                   AND (p.created_at < o.created_at OR (p.created_at = o.created_at AND p.id < o.id))) \
               ORDER BY created_at, id LIMIT ?2) \
             RETURNING {ENTRY_COLUMNS}"
        ))?;
        let mut rows: Vec<StoredEntry> = stmt
            .query_map(
                params![
                    now,
                    i64::try_from(limit).unwrap_or(i64::MAX),
                    self.claims.owner,
                    self.claims.lease,
                    skip
                ],
                stored_entry,
            )?
            .collect::<Result<_, _>>()?;
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        rows.into_iter().map(StoredEntry::decode).collect()
    }

    fn pending_for(
        &mut self,
        destination: &DestinationId,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM outbox WHERE destination = ?1 AND state = 'pending' ORDER BY created_at, id LIMIT ?2"
        ))?;
        let rows: Vec<StoredEntry> = stmt
            .query_map(
                params![
                    destination.to_string(),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                stored_entry,
            )?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(StoredEntry::decode).collect()
    }

    fn next_due(&mut self) -> Result<Option<Millis>, StoreError> {
        Ok(self.conn.query_row(
            "SELECT MIN(CASE WHEN claimed_by IS NOT ?1 AND lease_until > next_attempt_at \
             THEN lease_until ELSE next_attempt_at END) FROM outbox WHERE state = 'pending'",
            params![self.claims.owner],
            |row| row.get(0),
        )?)
    }

    fn record(&mut self, id: &str, outcome: &Recorded) -> Result<(), StoreError> {
        match outcome {
            Recorded::Delivered { at } => self.conn.execute(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, next_attempt_at = ?2, last_error = NULL, claimed_by = NULL, lease_until = NULL WHERE id = ?1 AND state = 'pending'",
                params![id, at],
            )?,
            Recorded::RetryAt { at, error } => self.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3, claimed_by = NULL, lease_until = NULL WHERE id = ?1 AND state = 'pending'",
                params![id, at, error],
            )?,
            Recorded::Dead { error } => self.conn.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2, claimed_by = NULL, lease_until = NULL WHERE id = ?1 AND state = 'pending'",
                params![id, error],
            )?,
        };
        Ok(())
    }

    fn entries_for(&mut self, incident_keys: &[String]) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM outbox WHERE incident_key = ?1 ORDER BY created_at"
        ))?;
        let mut entries = Vec::new();
        for key in incident_keys {
            for row in stmt.query_map(params![key], stored_entry)? {
                entries.push(row?.decode()?);
            }
        }
        Ok(entries)
    }

    fn pending_count(&mut self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
            [],
            |row| row.get::<_, i64>(0),
        )? as u64)
    }
}

impl StoreChores for SqliteStore {
    fn is_leader(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }

    fn forget_resolved(&mut self, cutoff: Millis) -> Result<Vec<String>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let keys: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT key FROM incidents WHERE json_extract(data, '$.status.state') = 'resolved' \
                 AND json_extract(data, '$.status.at') < ?1 ORDER BY key",
            )?;
            stmt.query_map(params![cutoff], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        for key in &keys {
            tx.execute("DELETE FROM members WHERE incident_key = ?1", params![key])?;
            tx.execute("DELETE FROM incidents WHERE key = ?1", params![key])?;
        }
        tx.commit()?;
        Ok(keys)
    }

    fn gc(&mut self, cutoff: Millis) -> Result<usize, StoreError> {
        let silences = self
            .conn
            .execute("DELETE FROM silences WHERE ends_at < ?1", params![cutoff])?;
        Ok(silences
            + self.conn.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'dead') AND created_at < ?1",
                params![cutoff],
            )?)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn maintain(&mut self) -> Result<(), StoreError> {
        // PASSIVE: copies what it can without waiting for (or blocking) the writer.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }
}
