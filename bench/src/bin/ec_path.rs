//! `ec-path`: cost of Kiseki's erasure-coded chunk path against raw Reed-Solomon measured in the
//! same run, and the time to rebuild a lost device.
//!
//! - Baseline: `reed_solomon_erasure` (galois 8, SIMD) `encode` of preallocated, reused shards
//!   (the frame cut in `k`), and `reconstruct_data` with `m` data shards erased. One thread.
//! - Kiseki codec: `Codec::encode` (one allocation for all fragment files, copy + pad, parity,
//!   CRC32C of every body, headers) and `Codec::decode` (all data fragments present: concatenate;
//!   degraded: `m` data fragments missing, reconstruct).
//! - Kiseki store: `ErasureChunkStore::put`/`get` over `k+m` in-memory devices (placement,
//!   encode on a blocking thread, parallel fragment writes; reads check every fragment's CRC),
//!   and `get` with one device emptied (degraded).
//! - Rebuild: `ErasureChunkStore` over `k+m+1` `FsFragmentStore` directories in `--dir` (durable
//!   writes), `--rebuild-bytes` of chunks, one device directory deleted, `rebuild()` timed; the
//!   baseline writes the same number of fragment-sized files durably (write + fdatasync + rename
//!   + directory fsync) to one directory: the part of a rebuild no code can avoid.
//!
//! Raw and Kiseki alternate in rounds so drift hits both; every decoded frame is compared with
//! the original outside the timed sections.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use clap::Parser;
use kiseki_bench::{
    fill_pseudo_random, gib_per_second, parse_bytes, print_result, temp_dir_in, Goal, GIB,
};
use kiseki_chunk::{
    ChunkStore, Codec, DeviceClass, DeviceInfo, EcPolicy, EcProfile, ErasureChunkStore,
    FragmentKey, FragmentStore, FsFragmentStore, MemoryFragmentStore, Placement, PoolName,
};
use kiseki_types::{ChunkId, TenantId};
use reed_solomon_erasure::galois_8::ReedSolomon;

const BENCH: &str = "ec-path";
const TENANT: TenantId = TenantId(7);

/// Erasure-coded chunk path against raw Reed-Solomon, and rebuild time per GiB.
#[derive(Parser, Debug)]
#[command(name = "ec-path", version)]
struct Args {
    /// Frame bytes pushed through each in-memory path per profile, e.g. 1GiB.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    bytes: u64,
    /// Chunk frame size.
    #[arg(long, default_value = "4MiB", value_parser = parse_bytes)]
    chunk_bytes: u64,
    /// Profiles to measure, comma-separated.
    #[arg(long, default_value = "4+2,8+3", value_delimiter = ',')]
    profiles: Vec<EcProfile>,
    /// Distinct frames cycled through.
    #[arg(long, default_value_t = 8)]
    buffers: usize,
    /// Alternating raw/Kiseki rounds.
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// Goal for Kiseki codec encode ÷ raw encode (the codec also copies the frame into the
    /// fragment files and CRCs every body: two more passes over the data than raw RS).
    #[arg(long, default_value_t = 0.5)]
    goal: f64,
    /// Pool data written before a device is deleted and rebuilt (first profile); 0 skips it.
    #[arg(long, default_value = "512MiB", value_parser = parse_bytes)]
    rebuild_bytes: u64,
    /// Directory on the disk to measure, for the rebuild benchmark.
    #[arg(long, default_value = "/var/tmp")]
    dir: std::path::PathBuf,
}

fn chunk_id(i: u64) -> ChunkId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_le_bytes());
    id[8..16].copy_from_slice(&0x6b69_7365_6b69_6563u64.to_le_bytes());
    ChunkId(id)
}

fn frames(args: &Args) -> Vec<Vec<u8>> {
    (0..args.buffers)
        .map(|i| {
            let mut frame = vec![0u8; args.chunk_bytes as usize];
            fill_pseudo_random(&mut frame, i as u64 + 1);
            frame
        })
        .collect()
}

#[derive(Default)]
struct Figures {
    raw_encode: Duration,
    raw_decode: Duration,
    encode: Duration,
    decode: Duration,
    decode_degraded: Duration,
    bytes: u64,
}

/// Raw RS over preallocated shards: encode, then reconstruct with `m` data shards erased.
fn raw_round(
    profile: EcProfile,
    frames: &[Vec<u8>],
    count: u64,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let (k, m) = (profile.data_fragments(), profile.parity_fragments());
    let rs = ReedSolomon::new(k, m).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let shard = profile.fragment_body_len(frames[0].len());
    let mut shards: Vec<Vec<u8>> = vec![vec![0u8; shard]; k + m];
    let mut present = vec![true; k + m];
    for i in 0..count {
        let frame = &frames[i as usize % frames.len()];
        for (slot, piece) in shards.iter_mut().zip(frame.chunks(shard)) {
            slot[..piece.len()].copy_from_slice(piece);
        }
        let started = Instant::now();
        rs.encode(&mut shards)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        figures.raw_encode += started.elapsed();
        present.iter_mut().for_each(|p| *p = true);
        present[..m.min(k)].iter_mut().for_each(|p| *p = false);
        let started = Instant::now();
        let mut refs: Vec<(&mut [u8], bool)> = shards
            .iter_mut()
            .zip(&present)
            .map(|(s, &p)| (s.as_mut_slice(), p))
            .collect();
        rs.reconstruct_data(&mut refs)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        figures.raw_decode += started.elapsed();
        ensure!(
            shards[0][..shard.min(frame.len())] == frame[..shard.min(frame.len())],
            "raw decode differs"
        );
    }
    Ok(())
}

fn kiseki_round(
    profile: EcProfile,
    codec: &Codec,
    frames: &[Vec<u8>],
    count: u64,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let m = profile.parity_fragments();
    let k = profile.data_fragments();
    for i in 0..count {
        let frame = &frames[i as usize % frames.len()];
        let id = chunk_id(i);
        let started = Instant::now();
        let fragments = codec.encode(profile, TENANT, id, frame)?;
        figures.encode += started.elapsed();
        let key = FragmentKey {
            tenant: TENANT,
            chunk: id,
            index: 0,
        };
        let held: Vec<Option<Bytes>> = fragments.iter().cloned().map(Some).collect();
        let started = Instant::now();
        let decoded = codec.decode(profile, key, frame.len(), &held)?;
        figures.decode += started.elapsed();
        ensure!(decoded[..] == frame[..], "decode differs");
        let mut degraded = held;
        degraded[..m.min(k)].iter_mut().for_each(|f| *f = None);
        let started = Instant::now();
        let decoded = codec.decode(profile, key, frame.len(), &degraded)?;
        figures.decode_degraded += started.elapsed();
        ensure!(decoded[..] == frame[..], "degraded decode differs");
    }
    figures.bytes += count * frames[0].len() as u64;
    Ok(())
}

fn device(i: usize) -> DeviceInfo {
    DeviceInfo {
        node: 0,
        device: format!("dev{i}"),
        class: DeviceClass::BulkNvme,
    }
}

/// Store path over in-memory devices: put, get, get with one device emptied.
async fn store_path(
    profile: EcProfile,
    frames: &[Vec<u8>],
    count: u64,
) -> anyhow::Result<(f64, f64, f64)> {
    let memory: Vec<Arc<MemoryFragmentStore>> = (0..profile.total_fragments())
        .map(|i| Arc::new(MemoryFragmentStore::new(device(i))))
        .collect();
    let devices = memory
        .iter()
        .map(|d| Arc::clone(d) as Arc<dyn FragmentStore>)
        .collect();
    let store = ErasureChunkStore::open(
        PoolName("bench".into()),
        devices,
        EcPolicy::uniform(profile),
        1,
    )?;
    let placement = Placement {
        pool: PoolName("bench".into()),
    };
    let frames: Vec<Bytes> = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
    let bytes = count * frames[0].len() as u64;
    // Every put is a new chunk (a repeated id would be a no-op: the store keeps a readable
    // chunk); outside the timed section the chunk written `live` puts ago is deleted, so memory
    // stays bounded and buffers are freed as a disk-backed store frees them.
    let live = frames.len() as u64;
    let mut put_time = Duration::ZERO;
    for i in 0..count {
        let frame = frames[i as usize % frames.len()].clone();
        let started = Instant::now();
        store.put(TENANT, chunk_id(i), frame, &placement).await?;
        put_time += started.elapsed();
        if i >= live {
            store.delete(TENANT, chunk_id(i - live)).await?;
        }
    }
    let put = gib_per_second(bytes, put_time);
    let base = count.saturating_sub(live);
    let kept = count.min(live);
    let mut get_time = Duration::ZERO;
    for i in 0..count {
        let index = base + i % kept;
        let started = Instant::now();
        let frame = store.get(TENANT, chunk_id(index)).await?;
        get_time += started.elapsed();
        ensure!(
            frame == frames[index as usize % frames.len()],
            "store get differs"
        );
    }
    memory[0].clear();
    let mut degraded_time = Duration::ZERO;
    for i in 0..count {
        let index = base + i % kept;
        let started = Instant::now();
        let frame = store.get(TENANT, chunk_id(index)).await?;
        degraded_time += started.elapsed();
        ensure!(
            frame == frames[index as usize % frames.len()],
            "degraded store get differs"
        );
    }
    Ok((
        put,
        gib_per_second(bytes, get_time),
        gib_per_second(bytes, degraded_time),
    ))
}

fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = dir.join(format!(".tmp.{name}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Rebuild of one lost device over directories in `parent`; returns (rebuild s, baseline s,
/// lost bytes, fragments rebuilt).
async fn rebuild(
    profile: EcProfile,
    frames: &[Vec<u8>],
    bytes: u64,
    parent: &Path,
) -> anyhow::Result<(Duration, Duration, u64, u64)> {
    let work = temp_dir_in(parent, "kiseki-ec-bench")?;
    let n = profile.total_fragments() + 1;
    let roots: Vec<_> = (0..n)
        .map(|i| work.path().join(format!("dev{i}")))
        .collect();
    let devices = roots
        .iter()
        .enumerate()
        .map(|(i, root)| {
            Ok(Arc::new(FsFragmentStore::open(device(i), root)?) as Arc<dyn FragmentStore>)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let store = ErasureChunkStore::open(
        PoolName("bench".into()),
        devices,
        EcPolicy::uniform(profile),
        1,
    )?;
    let placement = Placement {
        pool: PoolName("bench".into()),
    };
    let count = (bytes / frames[0].len() as u64).max(1);
    for i in 0..count {
        let frame = Bytes::copy_from_slice(&frames[i as usize % frames.len()]);
        store
            .put(TENANT, chunk_id(1_000_000 + i), frame, &placement)
            .await?;
    }
    fs::remove_dir_all(&roots[0]).context("deleting a device")?;
    let started = Instant::now();
    let report = store.rebuild().await?;
    let rebuild_time = started.elapsed();
    ensure!(
        report.chunks_unrecoverable == 0 && report.fragments_rebuilt == report.fragments_missing,
        "rebuild incomplete: {report:?}"
    );
    let after = store.rebuild().await?;
    ensure!(
        after.fragments_missing == 0,
        "missing fragments after rebuild: {after:?}"
    );
    // Baseline: write the same fragments durably, one file each, to one directory.
    let baseline_dir = work.path().join("baseline");
    fs::create_dir_all(&baseline_dir)?;
    let fragment = vec![0x5au8; (report.bytes_rebuilt / report.fragments_rebuilt.max(1)) as usize];
    let started = Instant::now();
    for i in 0..report.fragments_rebuilt {
        write_durably(&baseline_dir, &format!("f{i}"), &fragment)?;
    }
    Ok((
        rebuild_time,
        started.elapsed(),
        report.bytes_rebuilt,
        report.fragments_rebuilt,
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.chunk_bytes > 0 && args.buffers > 0 && args.rounds > 0,
        "sizes must be positive"
    );
    let frames = frames(&args);
    let per_round = (args.bytes / args.chunk_bytes / args.rounds).max(1);
    println!(
        "ec-path: {} MiB frames, {} per round × {} rounds per profile, profiles {:?}",
        args.chunk_bytes >> 20,
        per_round,
        args.rounds,
        args.profiles
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    );
    // An unmeasured warm-up of every profile: the allocator settles on reusing multi-MiB
    // buffers (otherwise the first profile measured pays page faults the later ones do not).
    for &profile in &args.profiles {
        let mut warm_up = Figures::default();
        raw_round(profile, &frames, 4, &mut warm_up)?;
        kiseki_round(profile, &Codec::new(), &frames, 4, &mut warm_up)?;
    }
    for &profile in &args.profiles {
        let codec = Codec::new();
        let mut figures = Figures::default();
        for _ in 0..args.rounds {
            raw_round(profile, &frames, per_round, &mut figures)?;
            kiseki_round(profile, &codec, &frames, per_round, &mut figures)?;
        }
        let gib = |time: Duration| gib_per_second(figures.bytes, time);
        let (raw_encode, raw_decode) = (gib(figures.raw_encode), gib(figures.raw_decode));
        let (encode, decode, degraded) = (
            gib(figures.encode),
            gib(figures.decode),
            gib(figures.decode_degraded),
        );
        println!("{profile}: raw RS encode {raw_encode:.2} GiB/s, reconstruct ({} data lost) {raw_decode:.2} GiB/s", profile.parity_fragments());
        println!("{profile}: Kiseki codec encode {encode:.2} GiB/s ({:.2}×), decode {decode:.2} GiB/s, degraded decode {degraded:.2} GiB/s ({:.2}× raw reconstruct)", encode / raw_encode, degraded / raw_decode);
        let name = |what: &str| format!("{profile} {what}");
        print_result(
            BENCH,
            &name("raw RS encode"),
            raw_encode,
            "GiB/s",
            Goal::None,
        );
        print_result(
            BENCH,
            &name("raw RS reconstruct"),
            raw_decode,
            "GiB/s",
            Goal::None,
        );
        print_result(BENCH, &name("codec encode"), encode, "GiB/s", Goal::None);
        print_result(BENCH, &name("codec decode"), decode, "GiB/s", Goal::None);
        print_result(
            BENCH,
            &name("codec degraded decode"),
            degraded,
            "GiB/s",
            Goal::None,
        );
        print_result(
            BENCH,
            &name("encode ÷ raw"),
            encode / raw_encode,
            "x",
            Goal::AtLeast(args.goal),
        );
        print_result(
            BENCH,
            &name("degraded ÷ raw"),
            degraded / raw_decode,
            "x",
            Goal::Informational,
        );
        let (put, get, get_degraded) =
            store_path(profile, &frames, per_round * args.rounds).await?;
        println!("{profile}: ErasureChunkStore (memory devices) put {put:.2} GiB/s ({:.2}× raw encode), get {get:.2} GiB/s, degraded get {get_degraded:.2} GiB/s", put / raw_encode);
        print_result(BENCH, &name("store put"), put, "GiB/s", Goal::None);
        print_result(BENCH, &name("store get"), get, "GiB/s", Goal::None);
        print_result(
            BENCH,
            &name("store degraded get"),
            get_degraded,
            "GiB/s",
            Goal::None,
        );
        print_result(
            BENCH,
            &name("store put ÷ raw"),
            put / raw_encode,
            "x",
            Goal::Informational,
        );
    }
    if args.rebuild_bytes > 0 {
        let profile = args.profiles.first().copied().context("no profile")?;
        let (rebuild_time, baseline, lost, fragments) =
            rebuild(profile, &frames, args.rebuild_bytes, &args.dir).await?;
        let lost_gib = lost as f64 / GIB;
        let per_gib = rebuild_time.as_secs_f64() / lost_gib.max(f64::MIN_POSITIVE);
        let pool_gib = args.rebuild_bytes as f64 / GIB;
        println!(
            "rebuild ({profile}, {} devices, {} MiB of chunks): {fragments} fragments, {:.0} MiB lost, rebuilt in {:.2} s = {per_gib:.2} s per GiB lost ({:.2} s per GiB of pool data); durable-write baseline {:.2} s ({:.2}×)",
            profile.total_fragments() + 1,
            args.rebuild_bytes >> 20,
            lost as f64 / (1u64 << 20) as f64,
            rebuild_time.as_secs_f64(),
            rebuild_time.as_secs_f64() / pool_gib.max(f64::MIN_POSITIVE),
            baseline.as_secs_f64(),
            baseline.as_secs_f64() / rebuild_time.as_secs_f64().max(f64::MIN_POSITIVE),
        );
        print_result(
            BENCH,
            &format!("{profile} rebuild s per GiB lost"),
            per_gib,
            "s",
            Goal::None,
        );
        print_result(
            BENCH,
            &format!("{profile} rebuild MiB/s"),
            lost as f64 / (1u64 << 20) as f64 / rebuild_time.as_secs_f64(),
            "MiB/s",
            Goal::None,
        );
        print_result(
            BENCH,
            &format!("{profile} durable write ÷ rebuild"),
            baseline.as_secs_f64() / rebuild_time.as_secs_f64(),
            "x",
            Goal::Informational,
        );
    }
    Ok(())
}
