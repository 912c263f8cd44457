//! `chunk-path`: throughput of Kiseki's chunk write and read path against raw AES-256-GCM
//! (aws-lc-rs) measured in the same run, single thread, on the same 4 MiB buffers.
//!
//! - Baseline: `seal_in_place_separate_tag` then `open_in_place` of each buffer (48 bytes of
//!   associated data, as Kiseki binds). Reported: seal, open and round-trip GiB/s.
//! - Kiseki in memory: `AddressingKey::chunk_id` (keyed BLAKE3) + `ChunkService::seal_buffer` (GCM
//!   in place in the chunk buffer `ChunkWriter` fills, CRC32C, header) as the write path; `ChunkService::open` (header and body
//!   CRC32C, GCM open) as the read path. Goal: round trip ≥ 0.8× the raw round trip.
//! - Kiseki through `FsChunkStore` (`ChunkService::write`/`read`, durable: fsync, rename, directory
//!   fsync) against writing the same bytes to files with write + fdatasync + rename in the same
//!   directory and reading them back from the page cache. Informational: it is disk-bound.
//!
//! The raw and Kiseki runs alternate in rounds so that drift (frequency, neighbours) hits both.
//! Every opened chunk is compared with its plaintext outside the timed sections.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use clap::Parser;
use kiseki_bench::{
    fill_pseudo_random, gib_per_second, parse_bytes, print_result, temp_dir_in, Goal, GIB, MIB,
};
use kiseki_chunk::{ChunkBuffer, ChunkService, DeviceClass, FsChunkStore, Placement, PoolName};
use kiseki_crypto::{AddressingKey, DataKey, DekEpoch, KEY_BYTES, NONCE_BYTES, TAG_BYTES};
use kiseki_types::limits::CHUNK_SIZE_BYTES_DEFAULT;
use kiseki_types::{ChunkId, TenantId};

const BENCH: &str = "chunk-path";
const TENANT: TenantId = TenantId(7);
const EPOCH: DekEpoch = DekEpoch(1);

/// Chunk write+read path throughput against raw AES-256-GCM measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "chunk-path", version)]
struct Args {
    /// Plaintext bytes pushed through each in-memory path (raw AES and Kiseki), e.g. 2GiB.
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    bytes: u64,
    /// Chunk (buffer) size; the default is Kiseki's default chunk size.
    #[arg(long, default_value_t = u64::from(CHUNK_SIZE_BYTES_DEFAULT), value_parser = parse_bytes)]
    chunk_bytes: u64,
    /// Distinct buffers cycled through (8 × 4 MiB is larger than the caches, as real data is).
    #[arg(long, default_value_t = 8)]
    buffers: usize,
    /// Alternating raw/Kiseki rounds the in-memory volume is split into.
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// Goal for the in-memory round-trip ratio Kiseki/raw.
    #[arg(long, default_value_t = 0.8)]
    goal: f64,
    /// Bytes written and read back through the store path and its file baseline; 0 skips it.
    #[arg(long, default_value = "512MiB", value_parser = parse_bytes)]
    store_bytes: u64,
    /// Directory (on the disk to measure) in which the store benchmark makes a temporary directory.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
}

/// Time spent in the write (seal) and read (open) halves for some bytes of plaintext.
#[derive(Clone, Copy, Debug, Default)]
struct PathTimes {
    bytes: u64,
    write: Duration,
    read: Duration,
}

impl PathTimes {
    fn add(&mut self, other: PathTimes) {
        self.bytes += other.bytes;
        self.write += other.write;
        self.read += other.read;
    }

    fn write_gib_per_second(&self) -> f64 {
        gib_per_second(self.bytes, self.write)
    }

    fn read_gib_per_second(&self) -> f64 {
        gib_per_second(self.bytes, self.read)
    }

    fn round_trip_gib_per_second(&self) -> f64 {
        gib_per_second(self.bytes, self.write + self.read)
    }
}

/// The buffers, keys and counters both paths share.
struct Workload {
    chunk_bytes: usize,
    /// Pristine plaintexts, each `chunk_bytes` long.
    plaintexts: Vec<Vec<u8>>,
    /// Working copies for the in-place raw baseline, `chunk_bytes + TAG_BYTES` long.
    scratch: Vec<Vec<u8>>,
    raw_key: LessSafeKey,
    data_key: Arc<DataKey>,
    addressing: AddressingKey,
    /// Counts operations; stamped into each plaintext so every chunk has distinct content.
    sequence: u64,
}

impl Workload {
    fn new(chunk_bytes: usize, buffers: usize) -> anyhow::Result<Self> {
        ensure!(buffers > 0, "--buffers must be at least 1");
        ensure!(chunk_bytes >= 8, "--chunk-bytes must be at least 8");
        let key_bytes = [0x42u8; KEY_BYTES];
        let unbound = UnboundKey::new(&AES_256_GCM, &key_bytes)
            .map_err(|_| anyhow::anyhow!("AES key rejected"))?;
        let plaintexts: Vec<Vec<u8>> = (0..buffers)
            .map(|index| {
                let mut buffer = vec![0u8; chunk_bytes];
                fill_pseudo_random(&mut buffer, 0x9e37_79b9_7f4a_7c15 ^ index as u64);
                buffer
            })
            .collect();
        let scratch = plaintexts
            .iter()
            .map(|plaintext| {
                let mut buffer = plaintext.clone();
                buffer.resize(chunk_bytes + TAG_BYTES, 0);
                buffer
            })
            .collect();
        Ok(Workload {
            chunk_bytes,
            plaintexts,
            scratch,
            raw_key: LessSafeKey::new(unbound),
            data_key: Arc::new(DataKey::new(EPOCH, &key_bytes)?),
            addressing: AddressingKey::new([0x17; KEY_BYTES]),
            sequence: 0,
        })
    }

    /// Picks the buffer for the next operation and stamps the operation number into its first
    /// bytes (in the pristine copy and the scratch copy); returns the buffer's index.
    fn next_buffer(&mut self) -> usize {
        self.sequence += 1;
        let index = (self.sequence % self.plaintexts.len() as u64) as usize;
        let stamp = self.sequence.to_le_bytes();
        self.plaintexts[index][..8].copy_from_slice(&stamp);
        self.scratch[index][..8].copy_from_slice(&stamp);
        index
    }

    fn key_for_epoch(&self) -> impl Fn(DekEpoch) -> Option<Arc<DataKey>> + Sync + '_ {
        move |epoch| (epoch == self.data_key.epoch()).then(|| Arc::clone(&self.data_key))
    }
}

/// Associated data of the same length as Kiseki's (tag, tenant, chunk id).
fn raw_associated_data(sequence: u64) -> [u8; 48] {
    let mut aad = [0u8; 48];
    aad[0..8].copy_from_slice(b"rawbench");
    aad[8..16].copy_from_slice(&sequence.to_le_bytes());
    aad
}

/// Raw AES-256-GCM: seal in place with a separate tag, append the tag, open in place.
fn raw_round(work: &mut Workload, operations: u64) -> anyhow::Result<PathTimes> {
    let chunk = work.chunk_bytes;
    let mut times = PathTimes::default();
    for _ in 0..operations {
        let index = work.next_buffer();
        let sequence = work.sequence;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..8].copy_from_slice(&sequence.to_le_bytes());
        let aad = raw_associated_data(sequence);
        let buffer = &mut work.scratch[index];

        let started = Instant::now();
        let tag = work
            .raw_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut buffer[..chunk],
            )
            .map_err(|_| anyhow::anyhow!("raw seal failed"))?;
        buffer[chunk..].copy_from_slice(tag.as_ref());
        let sealed = Instant::now();
        let opened = work
            .raw_key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), buffer)
            .map_err(|_| anyhow::anyhow!("raw open failed"))?;
        let done = Instant::now();

        ensure!(
            opened == &work.plaintexts[index][..],
            "raw round trip changed the data"
        );
        times.add(PathTimes {
            bytes: chunk as u64,
            write: sealed - started,
            read: done - sealed,
        });
    }
    Ok(times)
}

/// Kiseki in memory: address + seal + frame, then verify + open.
fn kiseki_round(work: &mut Workload, operations: u64) -> anyhow::Result<PathTimes> {
    let mut times = PathTimes::default();
    for _ in 0..operations {
        let index = work.next_buffer();
        let plaintext = &work.plaintexts[index];
        let key_for_epoch = work.key_for_epoch();

        // The stream's bytes arrive in a chunk buffer laid out as the frame (as `ChunkWriter`
        // receives them), like the baseline's bytes sit in its buffer: that copy is not timed.
        let buffer = ChunkBuffer::from_plaintext(plaintext);
        let started = Instant::now();
        let id = work.addressing.chunk_id(buffer.plaintext());
        let frame = ChunkService::seal_buffer(TENANT, id, &work.data_key, buffer)?;
        let sealed = Instant::now();
        let opened = ChunkService::open(TENANT, id, frame, &key_for_epoch)?;
        let done = Instant::now();

        ensure!(
            opened[..] == plaintext[..],
            "kiseki round trip changed the data"
        );
        times.add(PathTimes {
            bytes: plaintext.len() as u64,
            write: sealed - started,
            read: done - sealed,
        });
    }
    Ok(times)
}

/// Measures the pieces the Kiseki path adds to AES-GCM, on the same buffers, to explain the ratio.
fn print_breakdown(work: &mut Workload, bytes: u64, raw: &PathTimes, kiseki: &PathTimes) {
    let chunk = work.chunk_bytes;
    let operations = (bytes / chunk as u64).max(1);
    let mut blake3 = Duration::ZERO;
    let mut crc = Duration::ZERO;
    let mut checksum = 0u32;
    for _ in 0..operations {
        let index = work.next_buffer();
        let plaintext = &work.plaintexts[index];
        let started = Instant::now();
        let id = work.addressing.chunk_id(plaintext);
        let hashed = Instant::now();
        checksum ^= crc32c::crc32c(plaintext);
        let checked = Instant::now();
        std::hint::black_box(id);
        blake3 += hashed - started;
        crc += checked - hashed;
    }
    std::hint::black_box(checksum);
    let total = operations * chunk as u64;
    // Milliseconds per GiB add up along a serial path, so the pieces explain the measured totals.
    let ms_per_gib = |elapsed: Duration| elapsed.as_secs_f64() * 1e3 / (total as f64 / GIB);
    let (blake3, crc) = (ms_per_gib(blake3), ms_per_gib(crc));
    let path_ms_per_gib = |elapsed: Duration, times: &PathTimes| {
        elapsed.as_secs_f64() * 1e3 / (times.bytes as f64 / GIB)
    };
    let (seal, open) = (
        path_ms_per_gib(raw.write, raw),
        path_ms_per_gib(raw.read, raw),
    );
    println!(
        "  cost in ms per GiB (pieces timed alone on the same buffers, {} MiB):",
        total >> 20
    );
    println!(
        "    write: measured {:.0} ≈ BLAKE3 chunk id {blake3:.0} + AES-GCM seal {seal:.0} \
         + CRC32C {crc:.0} = {:.0}",
        path_ms_per_gib(kiseki.write, kiseki),
        blake3 + seal + crc
    );
    println!(
        "    read:  measured {:.0} ≈ CRC32C {crc:.0} + AES-GCM open {open:.0} = {:.0}",
        path_ms_per_gib(kiseki.read, kiseki),
        crc + open
    );
}

fn in_memory(args: &Args, work: &mut Workload) -> anyhow::Result<()> {
    let chunk = work.chunk_bytes as u64;
    let rounds = args.rounds.max(1);
    let operations_per_round = (args.bytes / chunk / rounds).max(1);
    println!(
        "in memory: {} rounds × {} chunks of {} KiB ({} MiB per path), {} buffers, one thread",
        rounds,
        operations_per_round,
        chunk >> 10,
        (rounds * operations_per_round * chunk) >> 20,
        work.plaintexts.len()
    );
    // Warm up both paths (allocator, caches, CPU frequency) before timing.
    raw_round(work, work.plaintexts.len() as u64)?;
    kiseki_round(work, work.plaintexts.len() as u64)?;

    let mut raw = PathTimes::default();
    let mut kiseki = PathTimes::default();
    for _ in 0..rounds {
        raw.add(raw_round(work, operations_per_round)?);
        kiseki.add(kiseki_round(work, operations_per_round)?);
    }
    let ratio = kiseki.round_trip_gib_per_second() / raw.round_trip_gib_per_second();
    println!(
        "  raw AES-256-GCM   seal {:>6.2} GiB/s   open {:>6.2} GiB/s   round trip {:>6.2} GiB/s",
        raw.write_gib_per_second(),
        raw.read_gib_per_second(),
        raw.round_trip_gib_per_second()
    );
    println!(
        "  kiseki chunk      write {:>5.2} GiB/s   read {:>6.2} GiB/s   round trip {:>6.2} GiB/s",
        kiseki.write_gib_per_second(),
        kiseki.read_gib_per_second(),
        kiseki.round_trip_gib_per_second()
    );
    println!(
        "  ratio kiseki/raw  write {:.2}×   read {:.2}×   round trip {:.2}× (goal ≥ {:.2}×: {})",
        kiseki.write_gib_per_second() / raw.write_gib_per_second(),
        kiseki.read_gib_per_second() / raw.read_gib_per_second(),
        ratio,
        args.goal,
        kiseki_bench::verdict(ratio, args.goal)
    );
    print_breakdown(work, 512 << 20, &raw, &kiseki);

    print_result(
        BENCH,
        "raw AES-GCM seal",
        raw.write_gib_per_second(),
        "GiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "raw AES-GCM open",
        raw.read_gib_per_second(),
        "GiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "raw AES-GCM round trip",
        raw.round_trip_gib_per_second(),
        "GiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "kiseki write (address+seal+frame)",
        kiseki.write_gib_per_second(),
        "GiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "kiseki read (verify+open)",
        kiseki.read_gib_per_second(),
        "GiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "kiseki round trip",
        kiseki.round_trip_gib_per_second(),
        "GiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "round trip kiseki/raw",
        ratio,
        "x",
        Goal::AtLeast(args.goal),
    );
    Ok(())
}

/// Writes `frame` to `dir/name` the plain durable-file way: a temporary file, write,
/// fdatasync, rename.
fn raw_file_write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = dir.join(format!(".tmp.{name}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&temp, dir.join(name))?;
    Ok(())
}

/// One written chunk of the store benchmark: where its plaintext came from, to verify it.
struct Stored {
    name: String,
    id: ChunkId,
    buffer: usize,
    sequence: u64,
}

fn verify_stamped(work: &Workload, stored: &Stored, data: &[u8]) -> anyhow::Result<()> {
    let expected = &work.plaintexts[stored.buffer];
    ensure!(
        data.len() == expected.len()
            && data[..8] == stored.sequence.to_le_bytes()
            && data[8..] == expected[8..],
        "chunk {} read back different bytes",
        stored.name
    );
    Ok(())
}

fn store_path(args: &Args, work: &mut Workload) -> anyhow::Result<()> {
    let chunk = work.chunk_bytes as u64;
    let chunks = (args.store_bytes / chunk).max(2);
    let temp = temp_dir_in(&args.dir, "kiseki-bench-chunk-")?;
    let raw_dir = temp.path().join("raw");
    fs::create_dir(&raw_dir)?;
    File::open(temp.path())?.sync_all()?;
    let pool = PoolName("bench".into());
    let store = FsChunkStore::open([(
        pool.clone(),
        temp.path().join("pool"),
        DeviceClass::BulkNvme,
    )])?;
    let service = ChunkService::new(Arc::new(store), Placement { pool });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "store path (informational, disk-bound): {} chunks ({} MiB) each way in {}",
        chunks,
        (chunks * chunk) >> 20,
        temp.path().display()
    );

    // Writes alternate between the two halves so that both see the same state of the disk.
    let (mut raw_written, mut kiseki_written) = (Vec::new(), Vec::new());
    let (mut raw, mut kiseki) = (PathTimes::default(), PathTimes::default());
    for round in 0..2 {
        for _ in 0..chunks / 2 + (chunks % 2) * (1 - round) {
            let buffer = work.next_buffer();
            let name = format!("{:016x}", work.sequence);
            let started = Instant::now();
            raw_file_write(&raw_dir, &name, &work.plaintexts[buffer])?;
            raw.write += started.elapsed();
            raw.bytes += chunk;
            raw_written.push(Stored {
                name,
                id: ChunkId([0; 32]),
                buffer,
                sequence: work.sequence,
            });
        }
        for _ in 0..chunks / 2 + (chunks % 2) * (1 - round) {
            let buffer = work.next_buffer();
            let plaintext = &work.plaintexts[buffer];
            let started = Instant::now();
            let written = runtime.block_on(service.write(
                TENANT,
                &work.addressing,
                &work.data_key,
                plaintext,
            ))?;
            kiseki.write += started.elapsed();
            kiseki.bytes += chunk;
            ensure!(
                !written.deduplicated,
                "chunk {} was deduplicated: contents must differ",
                work.sequence
            );
            let name = written.id.to_hex();
            kiseki_written.push(Stored {
                name,
                id: written.id,
                buffer,
                sequence: work.sequence,
            });
        }
    }

    for stored in &raw_written {
        let started = Instant::now();
        let data = fs::read(raw_dir.join(&stored.name))
            .with_context(|| format!("reading {}", stored.name))?;
        raw.read += started.elapsed();
        verify_stamped(work, stored, &data)?;
    }
    let key_for_epoch = work.key_for_epoch();
    for stored in &kiseki_written {
        let started = Instant::now();
        let data = runtime.block_on(service.read(TENANT, stored.id, &key_for_epoch))?;
        kiseki.read += started.elapsed();
        verify_stamped(work, stored, &data)?;
    }

    let ratio = |kiseki: f64, raw: f64| kiseki / raw;
    let mib =
        |times: &PathTimes, elapsed: Duration| times.bytes as f64 / MIB / elapsed.as_secs_f64();
    println!(
        "  raw files (write+fdatasync+rename)  write {:>7.1} MiB/s   read (page cache) {:>7.1} MiB/s",
        mib(&raw, raw.write),
        mib(&raw, raw.read)
    );
    println!(
        "  kiseki FsChunkStore (durable)       write {:>7.1} MiB/s   read (page cache) {:>7.1} MiB/s",
        mib(&kiseki, kiseki.write),
        mib(&kiseki, kiseki.read)
    );
    let write_ratio = ratio(kiseki.write_gib_per_second(), raw.write_gib_per_second());
    let read_ratio = ratio(kiseki.read_gib_per_second(), raw.read_gib_per_second());
    println!(
        "  ratio kiseki/raw  write {write_ratio:.2}×   read {read_ratio:.2}×   (informational)"
    );
    print_result(
        BENCH,
        "raw file write (durable)",
        mib(&raw, raw.write),
        "MiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "kiseki store write (durable)",
        mib(&kiseki, kiseki.write),
        "MiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "store write kiseki/raw",
        write_ratio,
        "x",
        Goal::Informational,
    );
    print_result(
        BENCH,
        "raw file read (page cache)",
        mib(&raw, raw.read),
        "MiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "kiseki store read (page cache)",
        mib(&kiseki, kiseki.read),
        "MiB/s",
        Goal::None,
    );
    print_result(
        BENCH,
        "store read kiseki/raw",
        read_ratio,
        "x",
        Goal::Informational,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let chunk_bytes = usize::try_from(args.chunk_bytes)?;
    let mut work = Workload::new(chunk_bytes, args.buffers)?;
    in_memory(&args, &mut work)?;
    if args.store_bytes > 0 {
        store_path(&args, &mut work)?;
    }
    Ok(())
}
