//! The store contract, written once and run unchanged against the embedded store (SQLite) and a
//! real PostgreSQL server: what is committed comes back, a locked step decides on the state as
//! stored (never on a stale copy, also with several writers at once), outbox claims are leased,
//! ordered per destination and recorded once, and the chores' queries forget and count the right
//! incidents. The PostgreSQL run is repeated over TLS (`sslmode=require`, the server verified
//! against the test CA given as the CA file) on a server that refuses plain connections.

use std::collections::{BTreeMap, BTreeSet};

use stackgen::router::dedup::{
    Acknowledgement, Heartbeat, Incident, IntentKind, Member, Severity, State, Status,
};
use stackgen::router::notification::Notification;
use stackgen::router::routing::DestinationId;
use stackgen::router::store::postgres::PostgresStore;
use stackgen::router::store::postgres_tls::CaBundle;
use stackgen::router::store::sqlite::{SqliteOptions, SqliteStore};
use stackgen::router::store::{
    Batch, Claims, DeliveryState, OpenCounts, OutboxEntry, Recorded, Scope, Store,
};
use stackgen::router::template;

use super::pg;

/// Opens handles on one database: each is what one router process would hold.
trait Backend: Sync {
    fn open(&self, owner: &str, lease: i64) -> Box<dyn Store>;
    /// Whether several routers may share it (then only one of them is the leader).
    fn shared(&self) -> bool;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn open(&self, owner: &str, lease: i64) -> Box<dyn Store> {
        let store = SqliteStore::open(
            &self.0.path().join("router.db"),
            SqliteOptions {
                sync_full: false,
                auto_checkpoint: true,
            },
        )
        .expect("open sqlite")
        .with_claims(Claims {
            owner: owner.into(),
            lease,
        });
        Box::new(store)
    }
    fn shared(&self) -> bool {
        false
    }
}

/// A database URL and the CA file that verifies its server, if any.
struct Postgres(String, Option<std::path::PathBuf>);

impl Backend for Postgres {
    fn open(&self, owner: &str, lease: i64) -> Box<dyn Store> {
        let ca = self
            .1
            .as_deref()
            .map(|path| CaBundle::read(path).expect("a readable CA bundle"));
        Box::new(
            PostgresStore::connect(
                &self.0,
                ca.as_ref(),
                Claims {
                    owner: owner.into(),
                    lease,
                },
            )
            .expect("connect postgres"),
        )
    }
    fn shared(&self) -> bool {
        true
    }
}

const LEASE: i64 = 1_000;

fn incident(key: &str, status: Status) -> Incident {
    Incident {
        key: key.into(),
        team: "t".into(),
        service: "s".into(),
        alertname: "A".into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        annotations_vary: false,
        generator_url: String::new(),
        alertmanager_url: String::new(),
        status,
        severity: Severity::Critical,
        notified_severity: Severity::Critical,
        opened_at: 5,
        last_notified_at: 5,
        sequence: 1,
        episode: 1,
        signals_told: ["A".to_string()].into(),
        held: true,
        unheard: true,
        acknowledged: Some(Acknowledgement {
            by: "dana".into(),
            at: 7,
        }),
        escalation_step: 1,
        members: BTreeMap::new(),
    }
}

fn member(firing: bool) -> Member {
    Member {
        identity: "pod=p".into(),
        alertname: "A".into(),
        severity: Severity::Critical,
        firing,
        starts_at: 1,
        ends_at: None,
        last_seen: 5,
    }
}

fn entry(id: &str, destination: &str, created_at: i64) -> OutboxEntry {
    OutboxEntry {
        id: id.into(),
        destination: DestinationId::parse(destination).expect("team/name"),
        notification: Notification {
            idempotency_key: id.into(),
            incident_key: "t/s/A".into(),
            ..template::sample(IntentKind::Opened)
        },
        created_at,
        next_attempt_at: created_at,
        attempts: 0,
        state: DeliveryState::Pending,
        last_error: None,
    }
}

fn ids(entries: &[OutboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

fn committed_state_and_outbox_come_back(backend: &dyn Backend) {
    let key = "t/s/A";
    {
        let mut store = backend.open("a", LEASE);
        store
            .commit(&Batch {
                incidents: vec![incident(key, Status::Open)],
                members: vec![(key.into(), u64::MAX, member(true))],
                heartbeat: Some(Heartbeat {
                    last_seen: Some(7),
                    clusters: [("eu-west-1".to_string(), 7), ("us-east-1".to_string(), 2)].into(),
                }),
                outbox: vec![entry("n1", "t/hook", 5), entry("n1", "t/hook", 5)],
                ..Batch::default()
            })
            .expect("commit");
        // The heartbeat only moves forward, each cluster's too.
        store
            .commit(&Batch {
                heartbeat: Some(Heartbeat {
                    last_seen: Some(3),
                    clusters: [("eu-west-1".to_string(), 3), ("us-east-1".to_string(), 6)].into(),
                }),
                ..Batch::default()
            })
            .expect("commit");
    }
    let mut store = backend.open("a", LEASE);
    // Housekeeping (SQLite: a WAL checkpoint) keeps everything.
    store.maintain().expect("maintain");
    let state = store.load_state().expect("load");
    assert_eq!(state.incidents[key].members[&u64::MAX], member(true));
    assert_eq!(state.incidents[key].status, Status::Open);
    assert_eq!(state.heartbeat.last_seen, Some(7));
    assert_eq!(
        state.heartbeat.clusters,
        [("eu-west-1".to_string(), 7), ("us-east-1".to_string(), 6)].into()
    );
    assert_eq!(
        store.pending_count().expect("count"),
        1,
        "the same idempotency key is stored once"
    );
    assert_eq!(
        store.open_counts().expect("counts"),
        OpenCounts {
            incidents: 1,
            firing_members: 1
        }
    );
    store.ping().expect("ping");
}

fn a_locked_step_decides_on_the_state_as_stored(backend: &dyn Backend) {
    let key = "t/s/A";
    let mut first = backend.open("a", LEASE);
    let mut second = backend.open("b", LEASE);
    let scope = Scope {
        keys: vec![key.into(), "t/s/never".into()],
        open: false,
        heartbeat: true,
    };
    first
        .locked_step(&scope, &mut |state| {
            assert!(state.incidents.is_empty(), "nothing stored yet");
            let mut opened = incident(key, Status::Open);
            opened.members.insert(1, member(true));
            state.heartbeat.last_seen = Some(42);
            Batch {
                incidents: vec![opened],
                members: vec![(key.into(), 1, member(true))],
                heartbeat: Some(state.heartbeat.clone()),
                ..Batch::default()
            }
        })
        .expect("first step");
    let mut seen = None;
    second
        .locked_step(&scope, &mut |state| {
            seen = Some(state.clone());
            Batch::default()
        })
        .expect("second step");
    let seen: State = seen.expect("decide ran");
    assert_eq!(
        seen.incidents.keys().collect::<Vec<_>>(),
        [key],
        "the other handle sees the committed incident, and no trace of the untouched key"
    );
    assert_eq!(seen.incidents[key].members[&1], member(true));
    assert_eq!(seen.heartbeat.last_seen, Some(42));
    assert_eq!(
        first.load_state().expect("load").incidents.len(),
        1,
        "a key the step did not write leaves nothing behind"
    );
}

fn concurrent_locked_steps_never_lose_a_decision(backend: &dyn Backend) {
    let key = "t/s/counter";
    const WRITERS: usize = 4;
    const STEPS: u32 = 25;
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            scope.spawn(move || {
                let mut store = backend.open(&format!("w{writer}"), LEASE);
                for _ in 0..STEPS {
                    store
                        .locked_step(
                            &Scope {
                                keys: vec![key.into(), format!("t/s/other-{writer}")],
                                open: writer % 2 == 0,
                                heartbeat: false,
                            },
                            &mut |state| {
                                let mut counter = state
                                    .incidents
                                    .get(key)
                                    .cloned()
                                    .unwrap_or_else(|| incident(key, Status::Open));
                                counter.sequence =
                                    state.incidents.get(key).map_or(1, |i| i.sequence + 1);
                                Batch {
                                    incidents: vec![counter],
                                    ..Batch::default()
                                }
                            },
                        )
                        .expect("step");
                }
            });
        }
    });
    let state = backend.open("check", LEASE).load_state().expect("load");
    assert_eq!(
        state.incidents[key].sequence,
        WRITERS as u32 * STEPS,
        "every step saw the one before it"
    );
}

fn the_open_scope_loads_every_open_incident(backend: &dyn Backend) {
    let mut store = backend.open("a", LEASE);
    store
        .commit(&Batch {
            incidents: vec![
                incident("t/s/open", Status::Open),
                incident("t/s/resolving", Status::Resolving { since: 3 }),
                incident("t/s/resolved", Status::Resolved { at: 4 }),
            ],
            members: vec![
                ("t/s/open".into(), 1, member(true)),
                ("t/s/open".into(), 2, member(false)),
                ("t/s/resolved".into(), 1, member(false)),
            ],
            ..Batch::default()
        })
        .expect("commit");
    let mut loaded = BTreeSet::new();
    store
        .locked_step(
            &Scope {
                keys: Vec::new(),
                open: true,
                heartbeat: false,
            },
            &mut |state| {
                loaded = state.incidents.keys().cloned().collect();
                assert_eq!(state.incidents["t/s/open"].members.len(), 2);
                Batch::default()
            },
        )
        .expect("step");
    assert_eq!(
        loaded.into_iter().collect::<Vec<_>>(),
        ["t/s/open", "t/s/resolving"]
    );
    assert_eq!(
        store.open_counts().expect("counts"),
        OpenCounts {
            incidents: 2,
            firing_members: 1
        }
    );
    assert!(store.forget_resolved(4).expect("forget").is_empty());
    assert_eq!(store.forget_resolved(5).expect("forget"), ["t/s/resolved"]);
    let state = store.load_state().expect("load");
    assert_eq!(
        state.incidents.keys().collect::<Vec<_>>(),
        ["t/s/open", "t/s/resolving"]
    );
}

fn claims_are_leased_ordered_and_recorded_once(backend: &dyn Backend) {
    let mut a = backend.open("a", LEASE);
    let mut b = backend.open("b", LEASE);
    a.commit(&Batch {
        outbox: vec![
            entry("hook-1", "t/hook", 10),
            entry("hook-2", "t/hook", 11),
            entry("pager-1", "t/pager", 12),
        ],
        ..Batch::default()
    })
    .expect("commit");
    let now = 100;
    // Only the oldest pending entry of each destination qualifies.
    let claimed = a.due(now, 10, &BTreeSet::new()).expect("due");
    assert_eq!(ids(&claimed), ["hook-1", "pager-1"]);
    assert!(
        b.due(now, 10, &BTreeSet::new()).expect("due").is_empty(),
        "claimed by another owner, and the lease runs"
    );
    // The owner may claim again (renewing the lease), except what it has in flight.
    assert_eq!(
        ids(&a
            .due(now, 10, &BTreeSet::from(["pager-1".to_string()]))
            .expect("due")),
        ["hook-1"]
    );
    a.record("hook-1", &Recorded::Delivered { at: now })
        .expect("record");
    assert_eq!(
        ids(&a.due(now, 10, &BTreeSet::new()).expect("due")),
        ["hook-2", "pager-1"]
    );
    // The owner dies: after the lease, the other takes over.
    drop(a);
    let later = now + LEASE;
    let taken = b.due(later, 10, &BTreeSet::new()).expect("due");
    assert_eq!(ids(&taken), ["hook-2", "pager-1"]);
    b.record(
        "pager-1",
        &Recorded::RetryAt {
            at: later + 500,
            error: "503".into(),
        },
    )
    .expect("record");
    b.record(
        "hook-2",
        &Recorded::Dead {
            error: "400".into(),
        },
    )
    .expect("record");
    // A late outcome from the dead owner changes nothing once recorded.
    b.record("hook-2", &Recorded::Delivered { at: later })
        .expect("late record");
    assert!(b.due(later, 10, &BTreeSet::new()).expect("due").is_empty());
    assert_eq!(b.next_due().expect("next"), Some(later + 500));
    let entries = b.entries_for(&["t/s/A".to_string()]).expect("entries");
    let by_id: BTreeMap<&str, &OutboxEntry> = entries.iter().map(|e| (e.id.as_str(), e)).collect();
    assert_eq!(by_id["hook-1"].state, DeliveryState::Delivered);
    assert_eq!(by_id["hook-2"].state, DeliveryState::Dead);
    assert_eq!(by_id["hook-2"].last_error.as_deref(), Some("400"));
    assert_eq!(by_id["pager-1"].state, DeliveryState::Pending);
    assert_eq!(by_id["pager-1"].attempts, 1);
    assert_eq!(
        ids(&b
            .pending_for(&DestinationId::new("t", "pager"), 10)
            .expect("pending")),
        ["pager-1"]
    );
    assert_eq!(b.pending_count().expect("count"), 1);
    assert_eq!(
        b.gc(11).expect("gc"),
        1,
        "delivered and dead before the cutoff"
    );
    assert_eq!(b.gc(1_000).expect("gc"), 1);
}

fn one_leader_at_a_time(backend: &dyn Backend) {
    let mut first = backend.open("a", LEASE);
    assert!(first.is_leader().expect("leader"));
    assert!(first.is_leader().expect("still leader"));
    let mut second = backend.open("b", LEASE);
    if !backend.shared() {
        assert!(second.is_leader().expect("one router owns the store"));
        return;
    }
    assert!(!second.is_leader().expect("not while the first lives"));
    drop(first);
    super::support::wait_for(
        "the lock passing on",
        std::time::Duration::from_secs(10),
        || second.is_leader().expect("leader"),
    );
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Sqlite(tempfile::tempdir().expect("temp dir")));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::Postgres(super::pg::shared().database(), None));
                }
            )*
        }
        mod postgres_tls {
            $(
                #[test]
                fn $name() {
                    let server = super::pg::shared_tls();
                    let ca = server.ca.as_ref().map(|ca| ca.cert());
                    let url = format!("{}&sslmode=require", server.database());
                    super::$name(&super::Postgres(url, ca));
                }
            )*
        }
    };
}

suite!(
    committed_state_and_outbox_come_back,
    a_locked_step_decides_on_the_state_as_stored,
    concurrent_locked_steps_never_lose_a_decision,
    the_open_scope_loads_every_open_incident,
    claims_are_leased_ordered_and_recorded_once,
    one_leader_at_a_time,
);
