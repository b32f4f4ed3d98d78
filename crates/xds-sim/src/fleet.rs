//! What every simulated proxy reports, shared between their tasks and the
//! scenario: when each first held a complete configuration, when each
//! ACKed the change the scenario marked, and counts of what it received.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config_view::ProxyConfig;

/// A marked change and how a proxy's configuration shows it has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Some cluster connects with this timeout (a MeshTimeout with a value used nowhere else).
    ConnectTimeout { millis: u64 },
    /// The ClusterLoadAssignment `assignment` holds `count` endpoints.
    Endpoints { assignment: String, count: usize },
    /// The secret `name` differs from the one the proxy held when it first
    /// had a complete configuration (a renewed certificate).
    SecretReplaced { name: String },
}

impl Probe {
    fn seen_in(&self, config: &ProxyConfig, first_secrets: &dyn Fn(&str) -> Option<u64>) -> bool {
        match self {
            Probe::ConnectTimeout { millis } => config.has_connect_timeout(*millis),
            Probe::Endpoints { assignment, count } => config.endpoint_count(assignment) == Some(*count),
            Probe::SecretReplaced { name } => {
                config.secret(name).is_some_and(|now| first_secrets(name).is_some_and(|first| first != now))
            }
        }
    }
}

/// The probe in force and when it was armed.
struct Armed {
    id: u32,
    probe: Probe,
}

/// One proxy's numbers. Times are nanoseconds since the fleet's epoch plus
/// one (zero: not yet).
#[derive(Debug, Default)]
pub struct Record {
    first_config: AtomicU64,
    probe_seen: AtomicU64,
    /// The probe id `probe_seen` belongs to.
    probe_id: AtomicU32,
    pub responses: AtomicU64,
    pub resources: AtomicU64,
    pub bytes: AtomicU64,
    pub nacks: AtomicU64,
    pub reconnects: AtomicU64,
}

/// Every proxy's record, the probe in force, and the common clock.
pub struct Fleet {
    epoch: Instant,
    records: Vec<Record>,
    armed: RwLock<Option<Arc<Armed>>>,
}

impl Fleet {
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            records: (0..size).map(|_| Record::default()).collect(),
            armed: RwLock::new(None),
        })
    }

    pub fn record(&self, proxy: usize) -> &Record {
        &self.records[proxy]
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn instant(&self, stamp: u64) -> Option<Instant> {
        (stamp != 0).then(|| self.epoch + Duration::from_nanos(stamp - 1))
    }

    /// Arms `probe`; proxies whose configuration shows it from now on are
    /// stamped. Returns the probe's id.
    pub fn arm(&self, probe: Probe) -> u32 {
        let mut armed = self.armed.write().unwrap();
        let id = armed.as_ref().map_or(1, |armed| armed.id + 1);
        *armed = Some(Arc::new(Armed { id, probe }));
        id
    }

    /// Called by a proxy after it ACKed a response: stamps its first
    /// complete configuration and the armed probe, once each.
    pub fn observe(&self, proxy: usize, config: &ProxyConfig, first_secrets: &dyn Fn(&str) -> Option<u64>) -> bool {
        let record = &self.records[proxy];
        let now = Instant::now();
        let complete = config.complete();
        let mut first = false;
        if record.first_config.load(Ordering::Relaxed) == 0 && complete {
            record.first_config.store(self.stamp(now), Ordering::Relaxed);
            first = true;
        }
        let armed = self.armed.read().unwrap().clone();
        if let Some(armed) = armed
            && record.probe_id.load(Ordering::Relaxed) != armed.id
            && complete
            && armed.probe.seen_in(config, first_secrets)
        {
            record.probe_seen.store(self.stamp(now), Ordering::Relaxed);
            record.probe_id.store(armed.id, Ordering::Relaxed);
        }
        first
    }

    /// When the proxy first held a complete configuration.
    pub fn first_config(&self, proxy: usize) -> Option<Instant> {
        self.instant(self.records[proxy].first_config.load(Ordering::Relaxed))
    }

    /// When the proxy ACKed a configuration showing probe `id`.
    pub fn probe_seen(&self, proxy: usize, id: u32) -> Option<Instant> {
        let record = &self.records[proxy];
        (record.probe_id.load(Ordering::Relaxed) == id)
            .then(|| self.instant(record.probe_seen.load(Ordering::Relaxed)))
            .flatten()
    }

    /// Totals over every proxy: (responses, resources, bytes, nacks, reconnects).
    pub fn totals(&self) -> Totals {
        let sum =
            |field: fn(&Record) -> &AtomicU64| self.records.iter().map(|r| field(r).load(Ordering::Relaxed)).sum();
        Totals {
            responses: sum(|r| &r.responses),
            resources: sum(|r| &r.resources),
            bytes: sum(|r| &r.bytes),
            nacks: sum(|r| &r.nacks),
            reconnects: sum(|r| &r.reconnects),
        }
    }
}

/// What the whole fleet received, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub responses: u64,
    pub resources: u64,
    pub bytes: u64,
    pub nacks: u64,
    pub reconnects: u64,
}

impl std::ops::Sub for Totals {
    type Output = Totals;
    fn sub(self, before: Totals) -> Totals {
        Totals {
            responses: self.responses - before.responses,
            resources: self.resources - before.resources,
            bytes: self.bytes - before.bytes,
            nacks: self.nacks - before.nacks,
            reconnects: self.reconnects - before.reconnects,
        }
    }
}
