//! Frames carried in the log (`Delta::Carried`): applying one keeps its frames in the tenant's
//! chunk store, so every replica, and a restart that replays the log, has the chunk a small
//! write references; a snapshot first syncs them (`make_durable`), since it lets the log drop
//! the entries that were their durable copy.

use std::sync::{Arc, Mutex, PoisonError};

use kiseki_chunk::{ChunkStore, Placement, PoolName};
use kiseki_log::{CarriedFrame, Delta, DeltaOutcome, CARRIED_FRAMES_PER_DELTA_MAX};
use kiseki_types::{ErrorKind, TenantId};

use super::apply::error;
use super::NamespaceView;

/// Frames whose keep failed that are remembered for a retry before the next snapshot. Past
/// that, snapshots fail until a restart, whose replay of the log keeps them again.
const FAILED_KEEPS_MAX: usize = 1024;

/// The chunk store a view keeps carried frames in (none for views without chunks, in tests),
/// and the frames whose keeping failed (retried before a snapshot, which fails while any still
/// fails, so the log keeps their entries).
#[derive(Clone, Default)]
pub(crate) struct FrameKeeper(Option<Arc<Keeper>>);

struct Keeper {
    tenant: TenantId,
    store: Arc<dyn ChunkStore>,
    failed: Mutex<Vec<CarriedFrame>>,
    /// A failed frame did not fit in `failed`: only the log still has it.
    failed_overflowed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for FrameKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FrameKeeper")
            .field(&self.0.as_ref().map(|keeper| keeper.tenant))
            .finish()
    }
}

impl FrameKeeper {
    pub(crate) fn new(tenant: TenantId, store: Arc<dyn ChunkStore>) -> Self {
        FrameKeeper(Some(Arc::new(Keeper {
            tenant,
            store,
            failed: Mutex::new(Vec::new()),
            failed_overflowed: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    fn keep(&self, frames: &[CarriedFrame]) {
        let Some(keeper) = &self.0 else {
            return;
        };
        for carried in frames {
            if let Err(error) = keeper.keep(carried) {
                tracing::error!(tenant = %keeper.tenant, chunk = %carried.chunk, %error,
                    "keeping a frame carried in the log; retried before the next snapshot");
                let mut failed = keeper.failed.lock().unwrap_or_else(PoisonError::into_inner);
                if failed.len() < FAILED_KEEPS_MAX {
                    failed.push(carried.clone());
                } else {
                    keeper
                        .failed_overflowed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    pub(crate) fn sync(&self) -> Result<(), String> {
        let Some(keeper) = &self.0 else {
            return Ok(());
        };
        let failed =
            std::mem::take(&mut *keeper.failed.lock().unwrap_or_else(PoisonError::into_inner));
        let mut still = Vec::new();
        let mut first_error = None;
        for carried in failed {
            if let Err(error) = keeper.keep(&carried) {
                first_error.get_or_insert_with(|| error.to_string());
                still.push(carried);
            }
        }
        if let Some(error) = first_error {
            keeper
                .failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(still);
            return Err(format!(
                "a frame carried in the log is not kept yet: {error}"
            ));
        }
        keeper
            .store
            .sync_carried()
            .map_err(|error| error.to_string())
    }
}

impl Keeper {
    fn keep(&self, carried: &CarriedFrame) -> Result<(), kiseki_chunk::ChunkError> {
        let placement = Placement {
            pool: PoolName(carried.pool.clone()),
        };
        self.store
            .put_carried(self.tenant, carried.chunk, &carried.frame, &placement)
    }
}

impl NamespaceView {
    /// Applies the write `delta` and, when it applies, keeps its carried `frames`.
    pub(super) fn apply_carried(&mut self, frames: &[CarriedFrame], delta: &Delta) -> DeltaOutcome {
        if matches!(delta, Delta::Carried { .. } | Delta::Placed { .. }) {
            return Err(error(
                ErrorKind::InvalidArgument,
                "carried frames wrap a write, not another wrapper",
            ));
        }
        if frames.len() > CARRIED_FRAMES_PER_DELTA_MAX
            || !frames.iter().all(CarriedFrame::is_bounded)
        {
            return Err(error(
                ErrorKind::InvalidArgument,
                "carried frames out of bounds",
            ));
        }
        let applied = self.apply_delta(delta)?;
        self.keeper.keep(frames);
        Ok(applied)
    }
}
