//! The node cache agent: the one `kiseki-client-fuse` process of a compute node serves every
//! job's reads through one [`NodeCache`] and answers the `kiseki` CLI on a Unix socket
//! (stage, release, evict, wipe, status, verify, hint; see [`protocol`]).
//!
//! It owns staging (walk a dataset, pin it all-or-nothing, fetch what is missing, record its
//! metadata snapshot so reads of it make no server calls), the cache modes of paths, and the
//! job hint log. It never decides what the cache keeps or evicts (the cache module does) and
//! never maps errors to errno (the FUSE adapter does).

pub mod config;
pub mod datasets;
pub mod protocol;
pub mod server;
pub mod snapshot;
mod staging;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::cache::{CacheMode, NodeCache};
use crate::client::Client;
use crate::transport::RequestCounts;
use protocol::{ErrorCode, HintPhase, Progress, ReleasedPin, Reply, VerifyOutcome};

/// Hints kept (the oldest go first).
pub const HINTS_MAX: usize = 256;

/// What the agent needs besides the client and the cache.
#[derive(Clone, Debug, Default)]
pub struct AgentSettings {
    /// The mount point (paths under it name namespace paths).
    pub mount_point: PathBuf,
    /// Named datasets: name → path or s3:// URL.
    pub datasets: BTreeMap<String, String>,
    /// Mode of paths without one of their own.
    pub default_mode: Option<CacheMode>,
    /// Modes of paths (dataset names or namespace paths).
    pub modes: Vec<(String, CacheMode)>,
}

/// One recorded job hint.
#[derive(Clone, Debug, Serialize)]
pub struct HintRecord {
    /// Seconds since the Unix epoch when it was recorded.
    pub at_unix_seconds: u64,
    /// The job.
    pub job: String,
    /// Phase start or end.
    pub phase: HintPhase,
    /// Its values.
    pub values: BTreeMap<String, String>,
}

/// The node cache agent.
pub struct Agent {
    client: Arc<Client>,
    cache: Arc<NodeCache>,
    requests: Arc<RequestCounts>,
    settings: AgentSettings,
    hints: Mutex<VecDeque<HintRecord>>,
    stagings: Mutex<BTreeMap<u64, Progress>>,
    next_staging: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Agent {
    /// An agent over `client` (whose chunk cache is `cache`) and its transport's `requests`.
    pub fn new(
        client: Arc<Client>,
        cache: Arc<NodeCache>,
        requests: Arc<RequestCounts>,
        settings: AgentSettings,
    ) -> Arc<Agent> {
        Arc::new(Agent {
            client,
            cache,
            requests,
            settings,
            hints: Mutex::new(VecDeque::new()),
            stagings: Mutex::new(BTreeMap::new()),
            next_staging: AtomicU64::new(1),
        })
    }

    /// Applies the configured cache modes to the client (paths that do not exist yet are
    /// skipped with a warning: they take the default mode).
    pub async fn apply_modes(&self) {
        let default_bypass = self.settings.default_mode == Some(CacheMode::Bypass);
        self.client.set_default_bypass(default_bypass);
        for (spec, mode) in &self.settings.modes {
            let path = match self.namespace_path(spec) {
                Ok(path) => path,
                Err(error) => {
                    tracing::warn!(%error, "cache mode of an unknown path");
                    continue;
                }
            };
            match self.client.resolve_path(&path).await {
                Ok(chain) => {
                    if let Some((_, _, node)) = chain.last() {
                        self.client
                            .set_tree_bypass(node.inode, *mode == CacheMode::Bypass);
                    }
                }
                Err(error) => tracing::warn!(%error, path, %mode, "cache mode not applied"),
            }
        }
    }

    fn namespace_path(&self, spec: &str) -> Result<String, String> {
        datasets::namespace_path(spec, &self.settings.datasets, &self.settings.mount_point)
    }

    fn record_hint(&self, job: String, phase: HintPhase, values: BTreeMap<String, String>) {
        let at_unix_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut hints = lock(&self.hints);
        while hints.len() >= HINTS_MAX {
            hints.pop_front();
        }
        tracing::info!(job, ?phase, ?values, "job hint");
        hints.push_back(HintRecord {
            at_unix_seconds,
            job,
            phase,
            values,
        });
    }

    /// The status reply: the cache's figures, server request counts, hints, stagings.
    fn status(&self) -> Reply {
        let cache = serde_json::to_value(self.cache.status()).unwrap_or_default();
        let mut status = match cache {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        let count = |key: &str| status.get(key).and_then(serde_json::Value::as_u64);
        let (l1, l2, misses) = (
            count("l1_hits").unwrap_or(0),
            count("l2_hits").unwrap_or(0),
            count("misses").unwrap_or(0),
        );
        let reads = l1 + l2 + misses;
        let ratio = if reads == 0 {
            0.0
        } else {
            (l1 + l2) as f64 / reads as f64
        };
        status.insert("hit_ratio".into(), serde_json::json!(ratio));
        let requests = self.requests.snapshot();
        status.insert(
            "requests".into(),
            serde_json::json!({
                "metadata": requests.metadata,
                "chunk_gets": requests.chunk_gets,
                "chunk_puts": requests.chunk_puts,
                "total": requests.total(),
            }),
        );
        let hints: Vec<HintRecord> = lock(&self.hints).iter().cloned().collect();
        status.insert(
            "hints".into(),
            serde_json::to_value(hints).unwrap_or_default(),
        );
        let stagings: Vec<Progress> = lock(&self.stagings).values().cloned().collect();
        status.insert(
            "stagings".into(),
            serde_json::to_value(stagings).unwrap_or_default(),
        );
        Reply::Status(serde_json::Value::Object(status))
    }

    fn release(&self, job: &str, specs: &[String]) -> Reply {
        let mut released = Vec::new();
        let mut paths = Vec::new();
        for spec in specs {
            match self.namespace_path(spec) {
                Ok(path) => paths.push(path),
                Err(message) => return Reply::error(ErrorCode::BadRequest, message),
            }
        }
        let targets: Vec<Option<&str>> = if paths.is_empty() {
            vec![None]
        } else {
            paths.iter().map(|path| Some(path.as_str())).collect()
        };
        for target in targets {
            for done in self.cache.release(job, target) {
                if done.still_pinned_by.is_empty() {
                    self.client.drop_pinned_metadata(&done.dataset);
                }
                released.push(ReleasedPin {
                    dataset: done.dataset,
                    job: done.job,
                    still_pinned_by: done.still_pinned_by,
                });
            }
        }
        Reply::Released { released }
    }

    async fn evict(&self, spec: &str) -> Reply {
        let path = match self.namespace_path(spec) {
            Ok(path) => path,
            Err(message) => return Reply::error(ErrorCode::BadRequest, message),
        };
        let walk = match datasets::walk(&self.client, spec, &path).await {
            Ok(walk) => walk,
            Err(error) => return staging::error_reply(&error),
        };
        let ids: Vec<_> = walk
            .files
            .iter()
            .flat_map(|(_, _, layout)| layout.extents.iter().map(|extent| extent.chunk))
            .collect();
        Reply::Evicted {
            bytes: self.cache.evict(&ids),
        }
    }

    async fn wipe(&self) -> Reply {
        let cache = Arc::clone(&self.cache);
        match tokio::task::spawn_blocking(move || cache.wipe()).await {
            Ok(Ok(())) => Reply::Wiped,
            Ok(Err(error)) => Reply::error(ErrorCode::Failed, format!("wiping the cache: {error}")),
            Err(error) => Reply::error(ErrorCode::Failed, format!("wiping the cache: {error}")),
        }
    }

    async fn verify(&self) -> Reply {
        match staging::verify(self).await {
            Ok(outcome) => Reply::Verified(outcome),
            Err(message) => Reply::error(ErrorCode::Failed, message),
        }
    }

    fn staging_started(&self) -> u64 {
        self.next_staging.fetch_add(1, Ordering::Relaxed)
    }

    fn staging_progress(&self, id: u64, progress: Option<Progress>) {
        let mut stagings = lock(&self.stagings);
        match progress {
            Some(progress) => {
                stagings.insert(id, progress);
            }
            None => {
                stagings.remove(&id);
            }
        }
    }
}

impl VerifyOutcome {
    fn from_counts(checked: u64, bad: u64, dropped: u64) -> VerifyOutcome {
        VerifyOutcome {
            checked,
            bad,
            dropped,
        }
    }
}
