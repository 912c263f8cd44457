//! Frames carried in the log (`Delta::Carried`): applying one keeps its frames in the tenant's
//! chunk store, so every replica, and a restart that replays the log, has the chunk a small
//! write references; a snapshot first syncs them (`make_durable`), since it lets the log drop
//! the entries that were their durable copy.

use std::sync::Arc;

use kiseki_chunk::{ChunkStore, Placement, PoolName};
use kiseki_log::{CarriedFrame, Delta, DeltaOutcome, CARRIED_FRAMES_PER_DELTA_MAX};
use kiseki_types::{ErrorKind, TenantId};

use super::apply::error;
use super::NamespaceView;

/// The chunk store a view keeps carried frames in (none for views without chunks, in tests).
#[derive(Clone, Default)]
pub(crate) struct FrameKeeper(Option<(TenantId, Arc<dyn ChunkStore>)>);

impl std::fmt::Debug for FrameKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FrameKeeper")
            .field(&self.0.as_ref().map(|(tenant, _)| tenant))
            .finish()
    }
}

impl FrameKeeper {
    pub(crate) fn new(tenant: TenantId, store: Arc<dyn ChunkStore>) -> Self {
        FrameKeeper(Some((tenant, store)))
    }

    fn keep(&self, frames: &[CarriedFrame]) {
        let Some((tenant, store)) = &self.0 else {
            return;
        };
        for carried in frames {
            let placement = Placement {
                pool: PoolName(carried.pool.clone()),
            };
            if let Err(error) =
                store.put_carried(*tenant, carried.chunk, &carried.frame, &placement)
            {
                // The entry stays the frame's copy until a snapshot, which this same failure
                // will refuse (make_durable syncs what was kept).
                tracing::error!(%tenant, chunk = %carried.chunk, %error, "keeping a frame carried in the log");
            }
        }
    }

    pub(crate) fn sync(&self) -> Result<(), String> {
        match &self.0 {
            Some((_, store)) => store.sync_carried().map_err(|error| error.to_string()),
            None => Ok(()),
        }
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
