//! Chunk files whose durable copy is, for now, the shard-log entry that carried their frame.
//!
//! A small file's frame rides in the log entry that commits it, so one `fdatasync` of the log
//! makes both durable; the chunk file is then written without syncs. Those files are listed
//! here until [`CarriedFiles::sync`] (run before a snapshot lets the log drop the entries)
//! syncs them. While listed, a file does not count as stored for deduplication: a writer that
//! finds it stores it durably instead of trusting a copy that may not be on disk.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::durable_file;

/// Unsynced files one store may list; the next carried write syncs them all first.
const UNSYNCED_FILES_MAX: usize = 8192;
/// Above this many files, one `syncfs` per file system is cheaper than a sync per file.
const FILES_SYNCED_ONE_BY_ONE_MAX: usize = 256;

/// The unsynced chunk files of one store.
#[derive(Default)]
pub(crate) struct CarriedFiles {
    unsynced: Mutex<BTreeSet<PathBuf>>,
}

impl CarriedFiles {
    /// Writes `frame` at `path` without syncing (unless the file already holds exactly it) and
    /// lists the file as unsynced.
    pub(crate) fn write(&self, path: &Path, frame: &[u8]) -> io::Result<()> {
        if self.len() >= UNSYNCED_FILES_MAX {
            self.sync()?;
        }
        // A file already there may be a torn copy from before a crash (the log entry being
        // replayed is the good one) or an earlier unsynced write: only identical bytes stay.
        let identical = match fs::read(path) {
            Ok(existing) => existing == frame,
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(error) => return Err(error),
        };
        if !identical {
            durable_file::replace_unsynced(path, frame)?;
        }
        self.lock().insert(path.to_owned());
        Ok(())
    }

    /// Whether `path` is listed as unsynced.
    pub(crate) fn is_unsynced(&self, path: &Path) -> bool {
        self.lock().contains(path)
    }

    /// Syncs `path` (and its directory) if it is listed, and unlists it. A listed file that
    /// was deleted meanwhile is unlisted and reported `NotFound`.
    pub(crate) fn sync_one(&self, path: &Path) -> io::Result<()> {
        if !self.is_unsynced(path) {
            return Ok(());
        }
        let synced = sync_file_and_dir(path);
        if synced.is_ok()
            || synced
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            self.lock().remove(path);
        }
        synced
    }

    /// Syncs every listed file, then unlists them. A file stays listed (absent for
    /// deduplication) until its sync returned.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let listed: Vec<PathBuf> = self.lock().iter().cloned().collect();
        if listed.is_empty() {
            return Ok(());
        }
        // A file deleted meanwhile (its chunk removed) needs no sync.
        let gone = |error: &io::Error| error.kind() == io::ErrorKind::NotFound;
        if listed.len() <= FILES_SYNCED_ONE_BY_ONE_MAX {
            let mut dirs = BTreeSet::new();
            for path in &listed {
                match File::open(path).and_then(|file| file.sync_data()) {
                    Err(error) if !gone(&error) => return Err(error),
                    _ => {}
                }
                if let Some(dir) = path.parent() {
                    dirs.insert(dir.to_owned());
                }
            }
            for dir in dirs {
                durable_file::sync_dir(&dir)?;
            }
        } else {
            let mut file_systems = BTreeSet::new();
            for path in &listed {
                let device = match fs::metadata(path) {
                    Ok(meta) => std::os::unix::fs::MetadataExt::dev(&meta),
                    Err(error) if gone(&error) => continue,
                    Err(error) => return Err(error),
                };
                if file_systems.insert(device) {
                    sync_file_system(path)?;
                }
            }
        }
        let mut unsynced = self.lock();
        for path in &listed {
            unsynced.remove(path);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.unsynced.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sync_file_and_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_data()?;
    match path.parent() {
        Some(dir) => durable_file::sync_dir(dir),
        None => Ok(()),
    }
}

/// `syncfs(2)` of the file system holding `path`: every dirty file and directory on it.
fn sync_file_system(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    rustix::fs::syncfs(&file).map_err(io::Error::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn listed_files_hold_their_frame_and_leave_the_list_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let carried = CarriedFiles::default();
        let path = dir.path().join("t1/ab/chunk");
        carried.write(&path, b"frame one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"frame one");
        assert!(carried.is_unsynced(&path));

        // A replayed entry repairs a torn copy and keeps an identical one.
        fs::write(&path, b"torn").unwrap();
        carried.write(&path, b"frame one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"frame one");

        carried.sync().unwrap();
        assert!(!carried.is_unsynced(&path));
        carried.write(&path, b"frame one").unwrap();
        carried.sync_one(&path).unwrap();
        assert!(!carried.is_unsynced(&path));

        // A listed file deleted before the sync (its chunk removed) does not fail it.
        carried.write(&path, b"frame one").unwrap();
        fs::remove_file(&path).unwrap();
        carried.sync().unwrap();
        assert!(!carried.is_unsynced(&path));
    }

    #[test]
    fn many_files_are_synced_by_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let carried = CarriedFiles::default();
        let paths: Vec<PathBuf> = (0..FILES_SYNCED_ONE_BY_ONE_MAX + 10)
            .map(|i| dir.path().join(format!("d{}/f{i}", i % 7)))
            .collect();
        for (i, path) in paths.iter().enumerate() {
            carried
                .write(path, format!("frame {i}").as_bytes())
                .unwrap();
        }
        carried.sync().unwrap();
        assert!(paths.iter().all(|path| !carried.is_unsynced(path)));
        assert_eq!(fs::read(&paths[3]).unwrap(), b"frame 3");
    }
}
