//! Chunk placement records on a node: the task that records layouts moved by rebuild or scrub
//! in the shard logs, the files an offline `rebuild`/`scrub` leaves for it, and the `placement`
//! command that shows where an object's fragments are recorded.
//!
//! Fresh layouts need nothing here: the namespace records them with the composition that
//! references the chunks (`kiseki_namespace`'s `placements` module). Moved layouts are proposed
//! by [`start_recorder`] as `RecordPlacement` deltas (through the shard's leader) once a second.
//! An offline repair cannot reach the running node's shard logs, so [`save_moved`] writes its
//! moved layouts to `<data_dir>/placement-pending/` (magic, version, CRC32C); the running node
//! picks such files up on its next tick (or on its next start), records them and deletes them.
//! Moved layouts still unrecorded when the node stops are saved there the same way, and the
//! `placement` command records pending files before it shows anything.
//!
//! This module routes records; it never moves or reads fragments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kiseki_chunk::{decode_moved, encode_moved, DeviceId, PlacementJournal, RecordedLayout};
use kiseki_namespace::Namespace;
use kiseki_types::{ChunkId, TenantId};
use tokio::sync::watch;

use crate::pools::Pools;

/// Directory (under the data dir) of moved layouts left by offline repairs.
pub const PENDING_DIR: &str = "placement-pending";
/// How often the recorder proposes what is pending.
const RECORD_INTERVAL: Duration = Duration::from_secs(1);
/// Layouts proposed in one delta.
const RECORD_BATCH_MAX: usize = 1024;
/// Pending files read per tick.
const PENDING_FILES_PER_TICK_MAX: usize = 16;
/// Largest pending file read (a full journal is about 16 MiB).
const PENDING_FILE_BYTES_MAX: u64 = 64 << 20;
/// Extents the `placement` command lists.
const SHOW_EXTENTS_MAX: usize = 100_000;

/// Records moved layouts (from the journal and from pending files) until `shutdown`.
pub fn start_recorder(
    journal: Arc<PlacementJournal>,
    namespace: Arc<Namespace>,
    data_dir: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let pending = data_dir.join(PENDING_DIR);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(RECORD_INTERVAL) => {}
            }
            let moved = journal.take_moved(RECORD_BATCH_MAX * 4);
            if !moved.is_empty() {
                if let Err(error) = record(&namespace, &moved).await {
                    tracing::warn!(%error, count = moved.len(), "recording moved placements failed; retrying");
                    for (tenant, chunk, layout) in moved {
                        journal.note_moved(tenant, chunk, layout);
                    }
                }
            }
            if let Err(error) = record_pending(&namespace, &pending).await {
                tracing::warn!(%error, dir = %pending.display(), "recording pending placements failed; retrying");
            }
        }
    });
}

/// Proposes `moved`, grouped by tenant, in deltas of at most [`RECORD_BATCH_MAX`].
async fn record(
    namespace: &Namespace,
    moved: &[(TenantId, ChunkId, RecordedLayout)],
) -> anyhow::Result<()> {
    let mut by_tenant: BTreeMap<TenantId, Vec<(ChunkId, RecordedLayout)>> = BTreeMap::new();
    for (tenant, chunk, layout) in moved {
        by_tenant
            .entry(*tenant)
            .or_default()
            .push((*chunk, layout.clone()));
    }
    for (tenant, layouts) in by_tenant {
        let handle = namespace.tenant(tenant).await?;
        for batch in layouts.chunks(RECORD_BATCH_MAX) {
            handle.record_placements(batch).await?;
        }
        tracing::info!(%tenant, count = layouts.len(), "recorded moved chunk placements");
    }
    Ok(())
}

/// Records and deletes the pending files of offline repairs (a few per call).
async fn record_pending(namespace: &Namespace, dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
        .collect();
    files.sort();
    for path in files.into_iter().take(PENDING_FILES_PER_TICK_MAX) {
        let size = std::fs::metadata(&path)?.len();
        anyhow::ensure!(
            size <= PENDING_FILE_BYTES_MAX,
            "{} is larger than {PENDING_FILE_BYTES_MAX} bytes",
            path.display()
        );
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let moved = decode_moved(&bytes).with_context(|| format!("{}", path.display()))?;
        record(namespace, &moved).await?;
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        tracing::info!(file = %path.display(), count = moved.len(), "recorded placements of an offline repair");
    }
    Ok(())
}

/// Writes the layouts an offline repair moved to a pending file for the node to record; returns
/// the file and how many layouts it holds (none: nothing moved).
pub fn save_moved(
    journal: &PlacementJournal,
    data_dir: &Path,
) -> anyhow::Result<Option<(PathBuf, usize)>> {
    let moved = journal.take_moved(usize::MAX);
    if moved.is_empty() {
        return Ok(None);
    }
    let dir = data_dir.join(PENDING_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let name = format!("{stamp:032}-{}", std::process::id());
    let temp = dir.join(format!("{name}.tmp"));
    let path = dir.join(format!("{name}.bin"));
    let bytes = encode_moved(&moved);
    {
        use std::io::Write;
        let mut file =
            std::fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, &path).with_context(|| format!("renaming {}", temp.display()))?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(Some((path, moved.len())))
}

/// Which object the `placement` command shows.
#[derive(Debug, clap::Args)]
pub struct PlacementQuery {
    /// The tenant (the development tenant is 1).
    #[arg(long, default_value_t = 1)]
    pub tenant: u64,
    /// The bucket (top-level directory).
    #[arg(long)]
    pub bucket: String,
    /// The object key (path below the bucket).
    #[arg(long)]
    pub key: String,
}

/// Prints the recorded placement of every chunk of an object: one line per fragment naming its
/// node and device (resolved to the configured device name when the pool has it). Records what
/// offline repairs or the last shutdown left pending first, as the node would at its start.
pub async fn show(
    namespace: &Namespace,
    pools: &Pools,
    data_dir: &Path,
    query: &PlacementQuery,
) -> anyhow::Result<()> {
    record_pending(namespace, &data_dir.join(PENDING_DIR)).await?;
    let tenant = namespace.open_tenant(TenantId(query.tenant)).await?;
    let info = tenant
        .head_object(&query.bucket, &query.key)
        .map_err(|error| anyhow::anyhow!("{}/{}: {error}", query.bucket, query.key))?;
    let extents = tenant.file_placements(info.inode, SHOW_EXTENTS_MAX)?;
    println!(
        "object {}/{}: {} bytes, {} chunks",
        query.bucket,
        query.key,
        info.size(),
        extents.len()
    );
    for (number, entry) in extents.iter().enumerate() {
        let chunk = entry.extent.chunk;
        let Some(placement) = &entry.placement else {
            let stored_whole = pools.store.contains(TenantId(query.tenant), chunk).await;
            println!(
                "chunk {number} {chunk}: no recorded placement{}",
                if stored_whole.unwrap_or(false) {
                    ""
                } else {
                    " (not found)"
                }
            );
            continue;
        };
        let profile = if placement.replicated {
            format!("replicate:{}", u32::from(placement.parity_fragments) + 1)
        } else {
            format!(
                "{}+{}",
                placement.data_fragments, placement.parity_fragments
            )
        };
        println!(
            "chunk {number} {chunk}: pool {} profile {profile} generation {:x}",
            placement.pool, placement.generation
        );
        let pool = pools
            .erasure
            .iter()
            .find(|pool| pool.name == placement.pool);
        for (index, site) in placement.fragments.iter().enumerate() {
            let id = DeviceId(site.device);
            let name = pool
                .and_then(|pool| pool.store.device_of(site.node, id))
                .map_or_else(
                    || "(not in the pool)".to_owned(),
                    |device| device.device().device.clone(),
                );
            println!(
                "  fragment {index}: node {} device {name} (id {id})",
                site.node
            );
        }
    }
    Ok(())
}
