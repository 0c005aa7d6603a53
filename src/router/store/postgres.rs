//! The shared store: PostgreSQL, for several router replicas behind one Service.
//!
//! - **Schema**: numbered migrations, applied at start under an advisory lock, so replicas
//!   starting together neither race nor apply one twice.
//! - **Ingest**: [`IncidentStore::locked_step`] runs in one transaction. It inserts a placeholder row for
//!   every touched incident key that has none (`ON CONFLICT DO NOTHING`, so a row to lock always
//!   exists), locks the rows with `SELECT ... FOR UPDATE` in key order (no deadlock between
//!   replicas locking overlapping sets), loads those incidents and their members as committed,
//!   lets the engine decide, writes the changes and the outbox entries, and commits. Two replicas
//!   given the same webhook at once therefore decide one after the other, the second on the
//!   first's result: one `opened`, never two. A step that loses a serialization or deadlock race
//!   is retried on fresh rows.
//! - **Delivery**: an outbox entry is claimed with `FOR UPDATE SKIP LOCKED` and a lease
//!   (`claimed_by`, `lease_until`); only the oldest pending entry of a destination qualifies and a
//!   leased one does not, so each destination has one sender at a time across the fleet. A
//!   replica killed mid-delivery leaves its claim to expire; another then sends the entry again,
//!   with the same idempotency key.
//! - **Fleet-wide chores** (reminders, held resolves, stale members, the heartbeat, garbage
//!   collection) run on the replica whose engine connection holds a session advisory lock; when
//!   that connection dies the lock is released and another replica takes it.
//! - **TLS**: as the URL's `sslmode` says, the server verified against `store.postgres.ca_file`
//!   or the public web PKI roots (see [`super::postgres_tls`]).
//! - **Outages**: a broken connection is dropped and opened again on the next call; until then
//!   every call fails, so the API answers 503 and `/readyz` fails.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Statement};

use super::postgres_tls::{CaBundle, PgTls};
use super::{
    Batch, Claims, IncidentStore, OpenCounts, OutboxEntry, OutboxStore, Recorded, Scope,
    StoreChores, StoreError, StoredEntry, from_json, to_json,
};
use crate::router::alert::Millis;
use crate::router::dedup::{Heartbeat, Incident, Member, State};
use crate::router::routing::DestinationId;
use crate::router::silence::{Silence, Silences};

/// Advisory lock held while migrating (any constant shared by every replica).
const MIGRATION_LOCK: i64 = 0x5354_4b47_0001;
/// Advisory lock held by the replica that runs the fleet-wide chores.
const LEADER_LOCK: i64 = 0x5354_4b47_0002;
/// How often a step that lost a race (serialization failure, deadlock) is tried.
const STEP_ATTEMPTS: usize = 8;

/// Numbered schema migrations; those not yet recorded in `stackgen_schema` are applied in order.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE incidents (
    key TEXT PRIMARY KEY,
    -- NULL: a placeholder a step inserted only to lock the key (removed before it commits).
    data TEXT,
    state TEXT,
    resolved_at BIGINT
);
CREATE INDEX incidents_open ON incidents (state) WHERE state IN ('open', 'resolving');
CREATE INDEX incidents_resolved ON incidents (resolved_at) WHERE state = 'resolved';
CREATE TABLE members (
    incident_key TEXT NOT NULL,
    fingerprint BIGINT NOT NULL,
    data TEXT NOT NULL,
    firing BOOLEAN NOT NULL,
    PRIMARY KEY (incident_key, fingerprint)
);
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seen BIGINT
);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    incident_key TEXT NOT NULL,
    notification TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    last_error TEXT,
    claimed_by TEXT,
    lease_until BIGINT
);
CREATE INDEX outbox_pending ON outbox (destination, created_at, id) WHERE state = 'pending';
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_incident ON outbox (incident_key);
CREATE INDEX outbox_done ON outbox (created_at) WHERE state <> 'pending';
"#,
    r#"
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    ends_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE cluster_heartbeats (
    cluster TEXT PRIMARY KEY,
    last_seen BIGINT NOT NULL
);
"#,
];

const ENTRY_COLUMNS: &str =
    "id, destination, notification, created_at, next_attempt_at, attempts, state, last_error";
const OPEN: &str = "state IN ('open', 'resolving')";

/// Statements prepared once per connection.
struct Statements {
    lock_placeholders: Statement,
    /// The touched keys, locked (a step).
    select_locked: Statement,
    /// The touched keys and every open incident, locked (a tick).
    select_locked_open: Statement,
    members_of: Statement,
    heartbeat: Statement,
    cluster_heartbeats: Statement,
    upsert_cluster_heartbeat: Statement,
    drop_placeholders: Statement,
    upsert_incidents: Statement,
    upsert_members: Statement,
    delete_members: Statement,
    delete_incidents: Statement,
    upsert_heartbeat: Statement,
    insert_outbox: Statement,
    claim: Statement,
    record_delivered: Statement,
    record_retry: Statement,
    record_dead: Statement,
    next_due: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        Ok(Statements {
            lock_placeholders: client.prepare(
                "INSERT INTO incidents (key) SELECT k FROM unnest($1::text[]) AS k ORDER BY k \
                 ON CONFLICT (key) DO NOTHING",
            )?,
            select_locked: client.prepare(
                "SELECT key, data FROM incidents WHERE key = ANY($1) ORDER BY key FOR UPDATE",
            )?,
            select_locked_open: client.prepare(&format!(
                "SELECT key, data FROM incidents WHERE key = ANY($1) OR {OPEN} \
                 ORDER BY key FOR UPDATE"
            ))?,
            members_of: client.prepare(
                "SELECT incident_key, fingerprint, data FROM members WHERE incident_key = ANY($1)",
            )?,
            heartbeat: client.prepare("SELECT last_seen FROM heartbeat WHERE id = 1")?,
            cluster_heartbeats: client
                .prepare("SELECT cluster, last_seen FROM cluster_heartbeats")?,
            upsert_cluster_heartbeat: client.prepare(
                "INSERT INTO cluster_heartbeats (cluster, last_seen) VALUES ($1, $2) ON CONFLICT (cluster) \
                 DO UPDATE SET last_seen = GREATEST(cluster_heartbeats.last_seen, excluded.last_seen)",
            )?,
            drop_placeholders: client
                .prepare("DELETE FROM incidents WHERE key = ANY($1) AND data IS NULL")?,
            upsert_incidents: client.prepare(
                "INSERT INTO incidents (key, data, state, resolved_at) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
                 ON CONFLICT (key) DO UPDATE SET data = excluded.data, state = excluded.state, \
                 resolved_at = excluded.resolved_at",
            )?,
            upsert_members: client.prepare(
                "INSERT INTO members (incident_key, fingerprint, data, firing) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::boolean[]) \
                 ON CONFLICT (incident_key, fingerprint) DO UPDATE SET data = excluded.data, \
                 firing = excluded.firing",
            )?,
            delete_members: client
                .prepare("DELETE FROM members WHERE incident_key = ANY($1)")?,
            delete_incidents: client.prepare("DELETE FROM incidents WHERE key = ANY($1)")?,
            upsert_heartbeat: client.prepare(
                "INSERT INTO heartbeat (id, last_seen) VALUES (1, $1) ON CONFLICT (id) DO UPDATE \
                 SET last_seen = GREATEST(heartbeat.last_seen, excluded.last_seen)",
            )?,
            insert_outbox: client.prepare(
                "INSERT INTO outbox (id, destination, incident_key, notification, created_at, \
                 next_attempt_at, attempts, state, last_error) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::bigint[], $6::bigint[], $7::int[], $8::text[], $9::text[]) \
                 ON CONFLICT (id) DO NOTHING",
            )?,
            claim: client.prepare(&format!(
                "WITH claimable AS ( \
                   SELECT id FROM outbox o WHERE state = 'pending' AND next_attempt_at <= $1 \
                   AND (lease_until IS NULL OR lease_until <= $1 OR claimed_by = $2) \
                   AND NOT (id = ANY($4)) \
                   AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.destination = o.destination \
                       AND p.state = 'pending' AND (p.created_at < o.created_at \
                       OR (p.created_at = o.created_at AND p.id < o.id))) \
                   ORDER BY created_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 UPDATE outbox SET claimed_by = $2, lease_until = $1 + $3 FROM claimable \
                 WHERE outbox.id = claimable.id RETURNING {}",
                ENTRY_COLUMNS
                    .split(", ")
                    .map(|c| format!("outbox.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?,
            record_delivered: client.prepare(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, \
                 next_attempt_at = $2, last_error = NULL, claimed_by = NULL, lease_until = NULL \
                 WHERE id = $1 AND state = 'pending'",
            )?,
            record_retry: client.prepare(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, \
                 last_error = $3, claimed_by = NULL, lease_until = NULL \
                 WHERE id = $1 AND state = 'pending'",
            )?,
            record_dead: client.prepare(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = $2, \
                 claimed_by = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending'",
            )?,
            next_due: client.prepare(
                "SELECT MIN(CASE WHEN claimed_by IS DISTINCT FROM $1 AND lease_until > next_attempt_at \
                 THEN lease_until ELSE next_attempt_at END) FROM outbox WHERE state = 'pending'",
            )?,
        })
    }
}

/// One connection to the shared database, opened again after it breaks.
pub struct PostgresStore {
    config: postgres::Config,
    tls: PgTls,
    connection: Option<(Client, Statements)>,
    claims: Claims,
    /// Whether this connection holds the leader lock.
    leader: bool,
    /// Whether the migrations are known to be applied (checked on the first connection).
    migrated: bool,
    /// The silences as last read, and when: a step reads them again only once they are older
    /// than [`SILENCES_FRESH`] (a query saved on every webhook), or after this store wrote one.
    silences: Option<(std::time::Instant, Silences)>,
}

/// How long the silences read by one step serve the next ones: a silence made on another
/// replica holds that replica's incidents at once and this one's within this.
const SILENCES_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The URL with libpq's `sslmode=verify-ca` and `sslmode=verify-full` (which managed database
/// providers put in the URLs they hand out) read as `require`: TLS always, and the server always
/// verified here, chain and host name, so both are met (`verify-ca` more strictly than libpq).
fn with_libpq_sslmodes(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL or `key=value` settings) and applies pending
    /// migrations under an advisory lock. TLS, when the URL's `sslmode` uses it, verifies the
    /// server against the PEM bundle `ca_file`, or the public web PKI roots without one.
    pub fn connect(url: &str, ca: Option<&CaBundle>, claims: Claims) -> Result<Self, StoreError> {
        let mut store = Self::lazy(url, ca, claims)?;
        store.migrate()?;
        Ok(store)
    }

    /// Like [`PostgresStore::connect`], but without connecting: the first call connects and
    /// applies the migrations. A router started while its database is unreachable serves (503
    /// to webhooks, `/readyz` failing) and takes up its work when the database answers. Only a
    /// URL or CA file that can never work is an error here.
    pub fn lazy(url: &str, ca: Option<&CaBundle>, claims: Claims) -> Result<Self, StoreError> {
        let mut config: postgres::Config = with_libpq_sslmodes(url)
            .parse()
            .map_err(|e: postgres::Error| StoreError::Io(format!("the database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("stackgen-router");
        let tls = PgTls::new(ca).map_err(StoreError::Io)?;
        Ok(PostgresStore {
            config,
            tls,
            connection: None,
            claims,
            leader: false,
            migrated: false,
            silences: None,
        })
    }

    /// Applies the migrations not applied yet, on a connection of its own, holding the
    /// migration lock so that replicas starting together apply each exactly once.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let mut client = self.open()?;
        client.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS stackgen_schema (version INTEGER PRIMARY KEY)",
        )?;
        let current: i32 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM stackgen_schema", &[])?
            .get(0);
        for (index, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO stackgen_schema (version) VALUES ($1)",
                &[&(index as i32 + 1)],
            )?;
            tx.commit()?;
        }
        // Closing the session releases the lock, also when a migration above failed.
        client.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
        self.migrated = true;
        Ok(())
    }

    /// A new connection; the error names the server and the step that failed, never the URL.
    fn open(&self) -> Result<Client, StoreError> {
        self.config.connect(self.tls.connector()).map_err(|e| {
            StoreError::Io(format!(
                "connecting to PostgreSQL{}: {}",
                server_of(&self.config),
                self.tls.describe(&e)
            ))
        })
    }

    /// The open connection, connecting first when there is none or it broke.
    fn client(&mut self) -> Result<(&mut Client, &Statements), StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|(client, _)| client.is_closed())
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            self.leader = false;
            if !self.migrated {
                self.migrate()?;
            }
            let mut client = self.open()?;
            let statements = Statements::prepare(&mut client)?;
            self.connection = Some((client, statements));
        }
        match self.connection.as_mut() {
            Some((client, statements)) => Ok((client, &*statements)),
            None => Err(StoreError::Io("no database connection".into())),
        }
    }

    /// Runs `f` on the connection; drops the connection when it broke, so the next call reconnects.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (client, statements) = self.client()?;
        let result = f(client, statements);
        if result.is_err()
            && self
                .connection
                .as_ref()
                .is_some_and(|(client, _)| client.is_closed())
        {
            self.connection = None;
            self.leader = false;
        }
        result
    }
}

/// ` at host:port` of the first server in the settings (no user, no password), or nothing.
fn server_of(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => return String::new(),
    };
    match config.get_ports().first() {
        Some(port) => format!(" at {host}:{port}"),
        None => format!(" at {host}"),
    }
}

/// Whether a failed step lost a race and may simply run again.
fn retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres(e) => e.code().is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        }),
        _ => false,
    }
}

/// The outbox columns `id, destination, notification, created_at, next_attempt_at, attempts,
/// state, last_error`, in that order.
fn entry_from(row: &postgres::Row) -> Result<OutboxEntry, StoreError> {
    StoredEntry {
        id: row.try_get(0)?,
        destination: row.try_get(1)?,
        notification: row.try_get(2)?,
        created_at: row.try_get(3)?,
        next_attempt_at: row.try_get(4)?,
        attempts: u32::try_from(row.try_get::<_, i32>(5)?).unwrap_or(0),
        state: row.try_get(6)?,
        last_error: row.try_get(7)?,
    }
    .decode()
}

/// The `state` and `resolved_at` columns of an incident (what the chores select on).
fn status_columns(incident: &Incident) -> (&'static str, Option<Millis>) {
    use crate::router::dedup::Status;
    match incident.status {
        Status::New => ("new", None),
        Status::Open => ("open", None),
        Status::Resolving { .. } => ("resolving", None),
        Status::Resolved { at } => ("resolved", Some(at)),
    }
}

/// Reads incidents (rows of `key, data`; placeholders skipped) and then their members.
fn load_incidents(
    tx: &mut impl postgres::GenericClient,
    statements: &Statements,
    rows: Vec<postgres::Row>,
    state: &mut State,
) -> Result<Vec<String>, StoreError> {
    let mut placeholders = Vec::new();
    for row in rows {
        let key: String = row.try_get(0)?;
        match row.try_get::<_, Option<String>>(1)? {
            Some(data) => {
                let incident: Incident = from_json(&data, "incident")?;
                state.incidents.insert(incident.key.clone(), incident);
            }
            None => placeholders.push(key),
        }
    }
    if !state.incidents.is_empty() {
        let keys: Vec<&String> = state.incidents.keys().collect();
        let members = tx.query(&statements.members_of, &[&keys])?;
        for row in members {
            let key: String = row.try_get(0)?;
            let fingerprint: i64 = row.try_get(1)?;
            let data: String = row.try_get(2)?;
            let member: Member = from_json(&data, "member")?;
            if let Some(incident) = state.incidents.get_mut(&key) {
                incident.members.insert(fingerprint as u64, member);
            }
        }
    }
    Ok(placeholders)
}

fn read_silences(client: &mut impl postgres::GenericClient) -> Result<Silences, StoreError> {
    let mut silences = Silences::new();
    for row in client.query("SELECT data FROM silences", &[])? {
        let silence: Silence = from_json(&row.try_get::<_, String>(0)?, "silence")?;
        silences.insert(silence.id.clone(), silence);
    }
    Ok(silences)
}

fn read_heartbeat(
    client: &mut impl postgres::GenericClient,
    statements: &Statements,
) -> Result<Heartbeat, StoreError> {
    let mut clusters = std::collections::BTreeMap::new();
    for row in client.query(&statements.cluster_heartbeats, &[])? {
        clusters.insert(row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?);
    }
    Ok(Heartbeat {
        last_seen: client
            .query_opt(&statements.heartbeat, &[])?
            .map(|row| row.try_get::<_, Option<i64>>(0))
            .transpose()?
            .flatten(),
        clusters,
    })
}

/// Writes a batch inside the caller's transaction, a few statements whatever its size.
fn write_batch(
    tx: &mut postgres::Transaction<'_>,
    statements: &Statements,
    batch: &Batch,
) -> Result<(), StoreError> {
    // One row per key (the last wins), in key order.
    let incidents: BTreeMap<&str, &Incident> = batch
        .incidents
        .iter()
        .map(|i| (i.key.as_str(), i))
        .collect();
    if !incidents.is_empty() {
        let mut keys = Vec::with_capacity(incidents.len());
        let mut data = Vec::with_capacity(incidents.len());
        let mut states = Vec::with_capacity(incidents.len());
        let mut resolved = Vec::with_capacity(incidents.len());
        for (key, incident) in &incidents {
            let (state, resolved_at) = status_columns(incident);
            keys.push(*key);
            data.push(to_json(*incident, "incident")?);
            states.push(state);
            resolved.push(resolved_at);
        }
        tx.execute(
            &statements.upsert_incidents,
            &[&keys, &data, &states, &resolved],
        )?;
    }
    let members: BTreeMap<(&str, u64), &Member> = batch
        .members
        .iter()
        .map(|(key, fingerprint, member)| ((key.as_str(), *fingerprint), member))
        .collect();
    if !members.is_empty() {
        let mut keys = Vec::with_capacity(members.len());
        let mut fingerprints = Vec::with_capacity(members.len());
        let mut data = Vec::with_capacity(members.len());
        let mut firing = Vec::with_capacity(members.len());
        for ((key, fingerprint), member) in &members {
            keys.push(*key);
            fingerprints.push(*fingerprint as i64);
            data.push(to_json(*member, "member")?);
            firing.push(member.firing);
        }
        tx.execute(
            &statements.upsert_members,
            &[&keys, &fingerprints, &data, &firing],
        )?;
    }
    if !batch.forgotten_incidents.is_empty() {
        tx.execute(&statements.delete_members, &[&batch.forgotten_incidents])?;
        tx.execute(&statements.delete_incidents, &[&batch.forgotten_incidents])?;
    }
    if let Some(last_seen) = batch.heartbeat.as_ref().and_then(|h| h.last_seen) {
        tx.execute(&statements.upsert_heartbeat, &[&last_seen])?;
    }
    for (cluster, last_seen) in batch.heartbeat.iter().flat_map(|h| &h.clusters) {
        tx.execute(&statements.upsert_cluster_heartbeat, &[cluster, last_seen])?;
    }
    for silence in &batch.silences {
        tx.execute(
            "INSERT INTO silences (id, ends_at, data) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE \
             SET ends_at = excluded.ends_at, data = excluded.data",
            &[&silence.id, &silence.ends_at, &to_json(silence, "silence")?],
        )?;
    }
    if !batch.outbox.is_empty() {
        let n = batch.outbox.len();
        let (mut ids, mut destinations, mut incident_keys, mut notifications) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut created, mut next, mut attempts, mut states, mut errors) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for entry in &batch.outbox {
            ids.push(entry.id.as_str());
            destinations.push(entry.destination.to_string());
            incident_keys.push(entry.notification.incident_key.as_str());
            notifications.push(to_json(&entry.notification, "notification")?);
            created.push(entry.created_at);
            next.push(entry.next_attempt_at);
            attempts.push(i32::try_from(entry.attempts).unwrap_or(i32::MAX));
            states.push(entry.state.as_str());
            errors.push(entry.last_error.as_deref());
        }
        tx.execute(
            &statements.insert_outbox,
            &[
                &ids,
                &destinations,
                &incident_keys,
                &notifications,
                &created,
                &next,
                &attempts,
                &states,
                &errors,
            ],
        )?;
    }
    Ok(())
}

impl PostgresStore {
    /// Runs `attempt` in a transaction, again when it lost a race with another replica.
    fn transact(
        &mut self,
        mut attempt: impl FnMut(&mut postgres::Transaction<'_>, &Statements) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let result = self.with(|client, statements| {
                let mut tx = client.transaction()?;
                attempt(&mut tx, statements)?;
                tx.commit()?;
                Ok(())
            });
            match result {
                Err(e) if tries < STEP_ATTEMPTS && retryable(&e) => continue,
                other => return other,
            }
        }
    }
}

impl IncidentStore for PostgresStore {
    fn load_state(&mut self) -> Result<State, StoreError> {
        self.with(|client, statements| {
            let mut state = State::default();
            let rows = client.query(
                "SELECT key, data FROM incidents WHERE data IS NOT NULL ORDER BY key",
                &[],
            )?;
            load_incidents(client, statements, rows, &mut state)?;
            state.heartbeat = read_heartbeat(client, statements)?;
            state.silences = read_silences(client)?;
            Ok(state)
        })
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.transact(|tx, statements| write_batch(tx, statements, batch))
    }

    fn locked_step(
        &mut self,
        scope: &Scope,
        decide: &mut dyn FnMut(&mut State) -> Batch,
    ) -> Result<(), StoreError> {
        let keys: Vec<&String> = scope
            .keys
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut cached = self.silences.take();
        let result = self.transact(|tx, statements| {
            if !keys.is_empty() {
                tx.execute(&statements.lock_placeholders, &[&keys])?;
            }
            let select = if scope.open {
                &statements.select_locked_open
            } else {
                &statements.select_locked
            };
            let rows = tx.query(select, &[&keys])?;
            let mut state = State::default();
            let placeholders = load_incidents(tx, statements, rows, &mut state)?;
            if scope.heartbeat {
                state.heartbeat = read_heartbeat(tx, statements)?;
            }
            state.silences = match &cached {
                Some((read_at, silences)) if read_at.elapsed() < SILENCES_FRESH && !scope.open => {
                    silences.clone()
                }
                _ => {
                    let silences = read_silences(tx)?;
                    cached = Some((std::time::Instant::now(), silences.clone()));
                    silences
                }
            };
            let batch = decide(&mut state);
            if !batch.silences.is_empty() {
                // Written here: the next step reads them anew.
                cached = None;
            }
            write_batch(tx, statements, &batch)?;
            let written: BTreeSet<&str> = batch.incidents.iter().map(|i| i.key.as_str()).collect();
            let leftover: Vec<&String> = placeholders
                .iter()
                .filter(|k| !written.contains(k.as_str()))
                .collect();
            if !leftover.is_empty() {
                tx.execute(&statements.drop_placeholders, &[&leftover])?;
            }
            Ok(())
        });
        self.silences = cached;
        result
    }

    fn open_counts(&mut self) -> Result<OpenCounts, StoreError> {
        self.with(|client, _| {
            let row = client.query_one(
                &format!(
                    "SELECT (SELECT COUNT(*) FROM incidents WHERE {OPEN}), \
                     (SELECT COUNT(*) FROM members m JOIN incidents i ON i.key = m.incident_key \
                      WHERE m.firing AND i.{OPEN})"
                ),
                &[],
            )?;
            Ok(OpenCounts {
                incidents: row.try_get::<_, i64>(0)? as u64,
                firing_members: row.try_get::<_, i64>(1)? as u64,
            })
        })
    }
}

impl OutboxStore for PostgresStore {
    fn due(
        &mut self,
        now: Millis,
        limit: usize,
        in_flight: &BTreeSet<String>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let skip: Vec<&String> = in_flight.iter().collect();
        let owner = self.claims.owner.clone();
        let lease = self.claims.lease;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|client, statements| {
            let rows = client.query(&statements.claim, &[&now, &owner, &lease, &skip, &limit])?;
            let mut entries = rows.iter().map(entry_from).collect::<Result<Vec<_>, _>>()?;
            entries.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(entries)
        })
    }

    fn pending_for(
        &mut self,
        destination: &DestinationId,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|client, _| {
            client
                .query(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM outbox WHERE destination = $1 AND state = 'pending' \
                         ORDER BY created_at, id LIMIT $2"
                    ),
                    &[&destination.to_string(), &limit],
                )?
                .iter()
                .map(entry_from)
                .collect()
        })
    }

    fn next_due(&mut self) -> Result<Option<Millis>, StoreError> {
        let owner = self.claims.owner.clone();
        self.with(|client, statements| {
            Ok(client
                .query_one(&statements.next_due, &[&owner])?
                .try_get::<_, Option<i64>>(0)?)
        })
    }

    fn record(&mut self, id: &str, outcome: &Recorded) -> Result<(), StoreError> {
        self.with(|client, statements| {
            match outcome {
                Recorded::Delivered { at } => {
                    client.execute(&statements.record_delivered, &[&id, at])?
                }
                Recorded::RetryAt { at, error } => {
                    client.execute(&statements.record_retry, &[&id, at, error])?
                }
                Recorded::Dead { error } => {
                    client.execute(&statements.record_dead, &[&id, error])?
                }
            };
            Ok(())
        })
    }

    fn entries_for(&mut self, incident_keys: &[String]) -> Result<Vec<OutboxEntry>, StoreError> {
        self.with(|client, _| {
            client
                .query(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM outbox WHERE incident_key = ANY($1) \
                         ORDER BY created_at, id"
                    ),
                    &[&incident_keys],
                )?
                .iter()
                .map(entry_from)
                .collect()
        })
    }

    fn pending_count(&mut self) -> Result<u64, StoreError> {
        self.with(|client, _| {
            Ok(client
                .query_one("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", &[])?
                .try_get::<_, i64>(0)? as u64)
        })
    }
}

impl StoreChores for PostgresStore {
    fn is_leader(&mut self) -> Result<bool, StoreError> {
        // Connecting anew (after a broken connection) drops the leadership with it.
        self.client()?;
        if self.leader {
            return Ok(true);
        }
        let leader = self.with(|client, _| {
            Ok(client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])?
                .try_get::<_, bool>(0)?)
        })?;
        self.leader = leader;
        Ok(leader)
    }

    fn forget_resolved(&mut self, cutoff: Millis) -> Result<Vec<String>, StoreError> {
        let mut forgotten = Vec::new();
        self.transact(|tx, statements| {
            let rows = tx.query(
                "DELETE FROM incidents WHERE state = 'resolved' AND resolved_at < $1 RETURNING key",
                &[&cutoff],
            )?;
            forgotten = rows
                .iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<Result<_, _>>()?;
            if !forgotten.is_empty() {
                tx.execute(&statements.delete_members, &[&forgotten])?;
            }
            Ok(())
        })?;
        forgotten.sort();
        Ok(forgotten)
    }

    fn gc(&mut self, cutoff: Millis) -> Result<usize, StoreError> {
        self.with(|client, _| {
            let silences = client.execute("DELETE FROM silences WHERE ends_at < $1", &[&cutoff])?;
            Ok((silences
                + client.execute(
                    "DELETE FROM outbox WHERE state IN ('delivered', 'dead') AND created_at < $1",
                    &[&cutoff],
                )?) as usize)
        })
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.with(|client, _| Ok(client.batch_execute("SELECT 1")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_verifying_sslmodes_parse_as_require() {
        for (url, expected) in [
            (
                "postgres://u:p@db.example.com:25060/router?sslmode=verify-full",
                postgres::config::SslMode::Require,
            ),
            (
                "host=db.example.com sslmode=verify-ca user=u",
                postgres::config::SslMode::Require,
            ),
            (
                "postgres://u@db/router?sslmode=disable&connect_timeout=3",
                postgres::config::SslMode::Disable,
            ),
            ("postgres://u@db/router", postgres::config::SslMode::Prefer),
        ] {
            let config: postgres::Config = with_libpq_sslmodes(url).parse().expect(url);
            assert_eq!(config.get_ssl_mode(), expected, "{url}");
        }
        assert!(
            "postgres://u@db/router?sslmode=verify-full"
                .parse::<postgres::Config>()
                .is_err(),
            "tokio-postgres alone refuses libpq's verifying modes"
        );
    }
}
