//! The small durable state of a shard log beside its segments: the vote, the committed id and
//! the last purged id, in one file (`meta`: magic `KSKLMETA` then a versioned, checksummed
//! record, see `codec`) replaced atomically (temp file, fsync, rename, fsync of the directory).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use openraft::Vote;
use serde::{Deserialize, Serialize};

use super::segments::sync_dir;
use crate::codec;
use crate::type_config::LogId;

const FILE_NAME: &str = "meta";
const TEMP_NAME: &str = "meta.tmp";
const MAGIC: &[u8; 8] = b"KSKLMETA";

/// The durable state of a shard log other than its entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LogMeta {
    pub(super) vote: Option<Vote<u64>>,
    pub(super) committed: Option<LogId>,
    pub(super) last_purged: Option<LogId>,
}

/// Reads the meta file of `dir`; a missing file is the state of a new log.
pub(super) fn read(dir: &Path) -> io::Result<LogMeta> {
    let image = match fs::read(dir.join(FILE_NAME)) {
        Ok(image) => image,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(LogMeta::default()),
        Err(error) => return Err(error),
    };
    let record = image.strip_prefix(MAGIC.as_slice()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a shard log meta file",
                dir.join(FILE_NAME).display()
            ),
        )
    })?;
    codec::decode(record)
}

/// Replaces the meta file of `dir` with `meta`, durably.
pub(super) fn write(dir: &Path, meta: &LogMeta) -> io::Result<()> {
    let mut image = MAGIC.to_vec();
    image.extend_from_slice(&codec::encode(meta)?);
    let temp = dir.join(TEMP_NAME);
    let mut file = File::create(&temp)?;
    file.write_all(&image)?;
    file.sync_all()?;
    fs::rename(&temp, dir.join(FILE_NAME))?;
    sync_dir(dir)
}
