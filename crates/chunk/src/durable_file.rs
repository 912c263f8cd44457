//! Files written durably: a new file's bytes are synced, it is renamed into place, and its
//! directory is synced, so after a crash a name holds either nothing or the whole file.
//!
//! Bytes go to disk with direct I/O. A buffered write copies every byte into the page cache
//! first; on the machines we measured, that copy cost as much CPU as sealing the chunk, and
//! buffered sequential writes ran at a fraction of the disk's direct rate. Direct I/O needs
//! block-aligned memory, offsets and lengths. Data whose memory starts at a block boundary (a
//! frame received over the bulk channel) has its whole blocks written from where it lies;
//! other data, and the last partial block, go through a per-thread aligned buffer (reused, so
//! its pages stay warm), written padded to the block size, and the file is cut back to the
//! data's length before `fdatasync`. File systems without direct I/O (tmpfs) get a plain
//! buffered write.
//!
//! Large files are read back with direct I/O too ([`read_whole`]): a buffered read fills the
//! page cache first (page allocation and a copy per byte), which the clients' own caches make
//! redundant for chunk-sized frames. Small files keep the page cache.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};

/// Alignment of buffer, offsets and lengths; 4096 covers every common logical block size.
const ALIGN: usize = 4096;
/// Largest write made through the aligned buffer; larger data is written buffered (chunk
/// frames are far smaller, so this only bounds the buffer).
const DIRECT_BYTES_MAX: usize = 64 << 20;

/// Files at least this long are read with direct I/O.
const DIRECT_READ_BYTES_MIN: u64 = 1 << 20;

/// Distinguishes temporary files of concurrent writes in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ALIGNED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Makes `path` hold `data` durably, replacing any file there: writes a temporary file in the
/// same directory (creating missing directories), syncs it, renames it over `path` and syncs
/// the directory.
pub(crate) fn replace_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    replace_via_temp(path, |temp| create_synced(temp, data), true)
}

/// Makes `path` hold `data` like [`replace_durably`] (temporary file renamed into place, so the
/// name never holds a partial file while the system runs) but without any sync: for files
/// whose durable copy is elsewhere until they are synced.
pub(crate) fn replace_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    replace_via_temp(path, |temp| fs::write(temp, data), false)
}

/// Writes a temporary file beside `path` with `write`, renames it over `path` and, if
/// `sync_directory`, syncs the directory. The temporary file is removed on failure.
fn replace_via_temp(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
    sync_directory: bool,
) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a replaced file needs a parent directory"))?;
    ensure_dir(dir)?;
    let temp = dir.join(format!(
        ".tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write(&temp)
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| {
            if sync_directory {
                sync_dir(dir)
            } else {
                Ok(())
            }
        });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// The whole content of the file at `path`: large files read with direct I/O into a
/// page-aligned buffer, small ones (and file systems without direct I/O) through the page
/// cache.
pub(crate) fn read_whole(path: &Path) -> io::Result<Bytes> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            return fs::read(path).map(Bytes::from)
        }
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len();
    let Ok(len) = usize::try_from(len) else {
        return Err(io::Error::other("file too large to read whole"));
    };
    if (len as u64) < DIRECT_READ_BYTES_MIN {
        drop(file);
        return fs::read(path).map(Bytes::from);
    }
    let padded = len.div_ceil(ALIGN) * ALIGN;
    let mut buffer = BytesMut::with_capacity(padded + ALIGN);
    let skip = buffer.as_ptr().align_offset(ALIGN).min(ALIGN);
    buffer.resize(skip, 0);
    buffer.advance(skip); // the data starts at a block boundary, as direct reads need
    while buffer.len() < len {
        match read_into_spare(&file, &mut buffer, padded) {
            Ok(0) => break, // the file shrank meanwhile
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            // A short read left an unaligned offset, which direct I/O refuses.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                return fs::read(path).map(Bytes::from)
            }
            Err(error) => return Err(error),
        }
    }
    buffer.truncate(len);
    Ok(buffer.freeze())
}

/// Reads from `file` into `buffer`'s spare room, up to `limit` bytes in all, without zeroing
/// the room first: a zero fill of every 4 MiB frame read was 4 % of the CPU of a cold read.
/// Returns the bytes read, which become part of `buffer`.
#[allow(unsafe_code)] // a read into spare capacity; only what the kernel wrote is kept
fn read_into_spare(file: &File, buffer: &mut BytesMut, limit: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let room = limit.saturating_sub(buffer.len());
    let spare = buffer.spare_capacity_mut();
    let room = room.min(spare.len());
    // SAFETY: the kernel writes at most `room` bytes, all inside the spare capacity.
    let read = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
    let Ok(read) = usize::try_from(read) else {
        return Err(io::Error::last_os_error());
    };
    // SAFETY: the `read` bytes after the current length were just written by the kernel.
    unsafe { buffer.set_len(buffer.len() + read) };
    Ok(read)
}

/// Syncs directory `dir` (its entries: created, renamed or removed names).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) if missing, syncing each parent whose entries changed.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
        match fs::create_dir(dir) {
            Ok(()) => sync_dir(parent)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Creates `path` (which must not exist) holding `data`, synced (`fdatasync`) before returning.
fn create_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    create_direct(path, data, Sync::Data)
}

/// Whether a new file's data is synced before [`create_direct`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// `fdatasync` after writing: the bytes survive a crash.
    Data,
    /// No sync: for caches discarded at restart anyway. With direct I/O the bytes still bypass
    /// the page cache.
    None,
}

/// Creates `path` (which must not exist) holding `data`, written with direct I/O when the file
/// system supports it (see the module doc), buffered otherwise.
pub fn create_direct(path: &Path, data: &[u8], sync: Sync) -> io::Result<()> {
    let whole_blocks = data.len() / ALIGN * ALIGN;
    if whole_blocks > 0 && data.as_ptr().align_offset(ALIGN) == 0 {
        return create_with_direct_io(path, data, sync, |file| {
            write_direct_in_place(path, file, data, sync)
        });
    }
    create_direct_with(path, data.len(), sync, |out| {
        out.copy_from_slice(data);
        Ok::<(), io::Error>(())
    })
}

/// Like [`create_direct`], but `fill` writes the file's `len` bytes straight into the write
/// buffer (for callers that transform data on its way to disk, such as sealing it: no extra
/// copy). Nothing is created when `fill` fails.
pub fn create_direct_with<E: From<io::Error>>(
    path: &Path,
    len: usize,
    sync: Sync,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    if len <= DIRECT_BYTES_MAX {
        return ALIGNED.with(|cell| {
            let mut buffer = cell.borrow_mut();
            let aligned = aligned_scratch(&mut buffer, len.div_ceil(ALIGN) * ALIGN);
            fill(&mut aligned[..len])?;
            aligned[len..].fill(0);
            Ok(create_with_direct_io(
                path,
                &aligned[..len],
                sync,
                |file| write_direct(path, file, aligned, len, sync),
            )?)
        });
    }
    let mut data = vec![0; len];
    fill(&mut data)?;
    Ok(write_buffered(path, &data, sync)?)
}

/// Creates `path` for direct I/O and hands it to `direct`; on a file system without direct
/// I/O (the open fails with EINVAL) writes `data` buffered instead.
fn create_with_direct_io(
    path: &Path,
    data: &[u8],
    sync: Sync,
    direct: impl FnOnce(File) -> io::Result<()>,
) -> io::Result<()> {
    match open_new(path, libc::O_DIRECT) {
        Ok(file) => direct(file),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            write_buffered(path, data, sync)
        }
        Err(error) => Err(error),
    }
}

fn write_buffered(path: &Path, data: &[u8], sync: Sync) -> io::Result<()> {
    let mut file = open_new(path, 0)?;
    file.write_all(data)?;
    finish(&file, sync)
}

fn finish(file: &File, sync: Sync) -> io::Result<()> {
    match sync {
        Sync::Data => file.sync_data(),
        Sync::None => Ok(()),
    }
}

fn open_new(path: &Path, flags: i32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(flags)
        .open(path)
}

/// Writes the first `len` bytes of `aligned` (zero padded to the block size) to the new file.
fn write_direct(
    path: &Path,
    mut file: File,
    aligned: &[u8],
    len: usize,
    sync: Sync,
) -> io::Result<()> {
    let written = write_once(&mut file, aligned)?;
    if written < len {
        return finish_buffered(path, &aligned[..len], written, sync);
    }
    if aligned.len() != len {
        file.set_len(len as u64)?;
    }
    finish(&file, sync)
}

/// Writes `data`, whose memory starts at a block boundary, to the new file in one vectored
/// write (one request to the disk): its whole blocks from where they lie, then its partial
/// block through the aligned buffer.
fn write_direct_in_place(path: &Path, mut file: File, data: &[u8], sync: Sync) -> io::Result<()> {
    let whole_blocks = data.len() / ALIGN * ALIGN;
    let tail = &data[whole_blocks..];
    let written = ALIGNED.with(|cell| {
        let mut buffer = cell.borrow_mut();
        let padded_tail = aligned_scratch(&mut buffer, tail.len().div_ceil(ALIGN) * ALIGN);
        padded_tail[..tail.len()].copy_from_slice(tail);
        padded_tail[tail.len()..].fill(0);
        let pieces = [
            IoSlice::new(&data[..whole_blocks]),
            IoSlice::new(padded_tail),
        ];
        match file.write_vectored(&pieces) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(0),
            other => other,
        }
    })?;
    if written < data.len() {
        return finish_buffered(path, data, written, sync);
    }
    if written != data.len() {
        file.set_len(data.len() as u64)?;
    }
    finish(&file, sync)
}

/// One direct write; an interrupted one counts as writing nothing.
fn write_once(file: &mut File, aligned: &[u8]) -> io::Result<usize> {
    match file.write(aligned) {
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(0),
        other => other,
    }
}

/// Finishes a file whose direct write stopped short after `written` bytes (the disk filling
/// up leaves an unaligned offset) with a buffered write, which reports the real cause.
fn finish_buffered(path: &Path, data: &[u8], written: usize, sync: Sync) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(written as u64))?;
    file.write_all(&data[written..])?;
    file.set_len(data.len() as u64)?;
    finish(&file, sync)
}

/// The first `padded` bytes of the thread's aligned buffer (grown as needed), block-aligned.
fn aligned_scratch(buffer: &mut Vec<u8>, padded: usize) -> &mut [u8] {
    if buffer.len() < padded + ALIGN {
        buffer.resize(padded + ALIGN, 0);
    }
    let start = buffer.as_ptr().align_offset(ALIGN);
    &mut buffer[start..start + padded]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_hold_exactly_the_data_whatever_its_length() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        for (n, len) in [0usize, 1, 4095, 4096, 4097, 1 << 20, (4 << 20) + 123]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + n) as u8).collect();
            let path = dir.path().join("sub").join(format!("f{n}"));
            replace_durably(&path, &data).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
            assert!(
                create_synced(&path, &data).is_err(),
                "a new file never overwrites one"
            );
            replace_durably(&path, b"replaced").unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"replaced");
        }
    }

    #[test]
    fn files_read_back_whole_whatever_their_length() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        for (n, len) in [0usize, 10, 4096, (1 << 20) - 1, 1 << 20, (4 << 20) + 88]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + n) as u8).collect();
            let path = dir.path().join(format!("r{n}"));
            std::fs::write(&path, &data).unwrap();
            let read = read_whole(&path).unwrap();
            assert_eq!(read.len(), len);
            assert!(read[..] == data[..], "length {len}");
        }
        let missing = read_whole(&dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn block_aligned_data_is_written_from_where_it_lies_with_its_partial_block() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let mut memory = vec![0u8; (8 << 20) + 2 * ALIGN];
        let start = memory.as_ptr().align_offset(ALIGN);
        for (n, len) in [ALIGN, ALIGN + 1, 3 * ALIGN - 1, (4 << 20) + 60, 8 << 20]
            .into_iter()
            .enumerate()
        {
            let data = &mut memory[start..start + len];
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = (i * 13 + n) as u8;
            }
            let data = &memory[start..start + len];
            assert_eq!(data.as_ptr().align_offset(ALIGN), 0);
            let path = dir.path().join(format!("aligned{n}"));
            create_direct(&path, data, Sync::Data).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
            // The same bytes from memory that is not aligned take the copying path.
            let path = dir.path().join(format!("unaligned{n}"));
            create_direct(&path, &memory[start + 1..start + 1 + len], Sync::None).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                &memory[start + 1..start + 1 + len]
            );
        }
    }
}
