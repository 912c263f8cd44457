//! The redb tables of a shard log and the mapping of redb errors to I/O errors.

use std::io;

use redb::TableDefinition;

/// Log entries by index; values are versioned records of `Entry<TypeConfig>`.
pub(super) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("log_entries");
/// Small named values, each a versioned record.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");

/// Key of the format marker, written when the database is created.
pub(super) const FORMAT: &str = "format";
/// The format marker: a magic and the layout version of the tables.
pub(super) const FORMAT_MAGIC_V1: &[u8] = b"KSKLOG\x00\x01";
/// Key of the last saved vote.
pub(super) const VOTE: &str = "vote";
/// Key of the last saved committed log id.
pub(super) const COMMITTED: &str = "committed";
/// Key of the last purged log id.
pub(super) const LAST_PURGED: &str = "last_purged";

/// A redb error as an I/O error: the underlying I/O error when there is one (so a full disk
/// stays `StorageFull`), otherwise `Other` with redb's message.
pub(super) fn redb_io(error: impl Into<redb::Error>) -> io::Error {
    match error.into() {
        redb::Error::Io(error) => error,
        other => io::Error::other(other.to_string()),
    }
}
