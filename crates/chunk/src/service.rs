use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kiseki_crypto::{open_in_place, seal_in_place, AddressingKey, DataKey, DekEpoch, TAG_BYTES};
use kiseki_types::limits::CHUNK_SIZE_BYTES_MAX;
use kiseki_types::{ChunkId, TenantId};

use crate::format::associated_data;
use crate::{
    ChunkBuffer, ChunkError, ChunkHeader, ChunkStore, Placement, PlacementPolicy, PoolName,
    HEADER_BYTES,
};

/// A chunk that is now durable in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenChunk {
    /// Its content address.
    pub id: ChunkId,
    /// Plaintext length.
    pub len: u32,
    /// Whether an identical chunk was already stored (nothing was written).
    pub deduplicated: bool,
}

/// Turns plaintext into stored chunks and back: addressing, sealing, framing, verification.
#[derive(Clone)]
pub struct ChunkService {
    store: Arc<dyn ChunkStore>,
    policy: Arc<PlacementPolicy>,
}

/// How [`ChunkService::keep_sealed_for_log`] kept a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealedKept {
    /// The chunk was stored already (deduplicated).
    AlreadyStored,
    /// Stored durably: the commit need not carry it.
    Stored,
    /// Checked, not written: the commit must carry the frame in its log entry, and applying
    /// it keeps the frame in this pool.
    ToCarry(PoolName),
}

impl ChunkService {
    /// A service writing every new chunk to `placement` in `store`.
    pub fn new(store: Arc<dyn ChunkStore>, placement: Placement) -> Self {
        Self::with_policy(store, PlacementPolicy::new(placement))
    }

    /// A service writing new chunks to the pool `policy` picks per tenant and workload.
    pub fn with_policy(store: Arc<dyn ChunkStore>, policy: PlacementPolicy) -> Self {
        ChunkService {
            store,
            policy: Arc::new(policy),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ChunkStore> {
        &self.store
    }

    /// Seals `plaintext` of `tenant`, whose content address is `id`, into a frame (copies the
    /// plaintext once; [`Self::seal_buffer`] seals without copying).
    pub fn seal(
        tenant: TenantId,
        id: ChunkId,
        key: &DataKey,
        plaintext: &[u8],
    ) -> Result<Bytes, ChunkError> {
        Self::seal_buffer(tenant, id, key, ChunkBuffer::from_plaintext(plaintext))
    }

    /// Seals the plaintext in `buffer` in place into a frame for chunk `id` of `tenant`.
    pub fn seal_buffer(
        tenant: TenantId,
        id: ChunkId,
        key: &DataKey,
        buffer: ChunkBuffer,
    ) -> Result<Bytes, ChunkError> {
        let plaintext_len = buffer.len();
        if plaintext_len > CHUNK_SIZE_BYTES_MAX as usize {
            return Err(ChunkError::TooLarge(plaintext_len));
        }
        let mut frame = buffer.into_frame();
        let (nonce, tag) = seal_in_place(
            key,
            &associated_data(tenant, id),
            &mut frame[HEADER_BYTES..],
        )?;
        frame.extend_from_slice(&tag);
        let header = ChunkHeader {
            tenant,
            id,
            epoch: key.epoch(),
            nonce,
            plaintext_len: plaintext_len as u32,
            body_crc: crc32c::crc32c(&frame[HEADER_BYTES..]),
        };
        header.encode_into(&mut frame[..HEADER_BYTES]);
        Ok(frame.freeze())
    }

    /// Verifies and opens a frame of chunk `id`: the header's checks, then the authentication
    /// tag with the tenant and id bound in (it covers every body byte, so the body's checksum
    /// is not computed again). Returns the plaintext; never returns unverified bytes.
    pub fn open(
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        key_for_epoch: &dyn Fn(DekEpoch) -> Option<Arc<DataKey>>,
    ) -> Result<Bytes, ChunkError> {
        let header = ChunkHeader::decode_header(&frame, tenant, id)?;
        let key = key_for_epoch(header.epoch).ok_or(ChunkError::MissingKey {
            tenant,
            id,
            epoch: header.epoch.0,
        })?;
        let aad = associated_data(tenant, id);
        let corrupt = |error: kiseki_crypto::CryptoError| ChunkError::Corrupt {
            tenant,
            id,
            reason: error.to_string(),
        };
        match frame.try_into_mut() {
            // Nobody else holds the frame: open it where it is.
            Ok(mut buffer) => {
                let plaintext_len =
                    open_in_place(&key, header.nonce, &aad, &mut buffer[HEADER_BYTES..])
                        .map_err(corrupt)?
                        .len();
                Ok(buffer
                    .freeze()
                    .slice(HEADER_BYTES..HEADER_BYTES + plaintext_len))
            }
            // Shared (a slice of a transport's receive buffer): decrypt into a new buffer
            // rather than copy the frame first.
            Err(shared) => {
                let mut plaintext = BytesMut::zeroed(header.plaintext_len as usize);
                kiseki_crypto::open_into(
                    &key,
                    header.nonce,
                    &aad,
                    &shared[HEADER_BYTES..],
                    &mut plaintext,
                )
                .map_err(corrupt)?;
                Ok(plaintext.freeze())
            }
        }
    }

    /// The plaintext length of a frame (from its size alone; nothing is verified).
    pub fn plaintext_len(frame: &[u8]) -> Option<usize> {
        frame.len().checked_sub(HEADER_BYTES + TAG_BYTES)
    }

    /// Like [`Self::open`], but decrypts into `out` (at least [`Self::plaintext_len`] bytes), so
    /// a caller that needs the plaintext in its own buffer (a file's aligned write buffer) gets
    /// it there with no copy of the frame. On an error, `out` holds no plaintext.
    pub fn open_into(
        tenant: TenantId,
        id: ChunkId,
        frame: &[u8],
        key_for_epoch: &dyn Fn(DekEpoch) -> Option<Arc<DataKey>>,
        out: &mut [u8],
    ) -> Result<usize, ChunkError> {
        let header = ChunkHeader::decode_header(frame, tenant, id)?;
        let key = key_for_epoch(header.epoch).ok_or(ChunkError::MissingKey {
            tenant,
            id,
            epoch: header.epoch.0,
        })?;
        let plaintext_len = header.plaintext_len as usize;
        let room = out.len();
        let plaintext = out
            .get_mut(..plaintext_len)
            .ok_or_else(|| ChunkError::Corrupt {
                tenant,
                id,
                reason: format!("{room} bytes of room for {plaintext_len} bytes of plaintext"),
            })?;
        let aad = associated_data(tenant, id);
        kiseki_crypto::open_into(&key, header.nonce, &aad, &frame[HEADER_BYTES..], plaintext)
            .map_err(|error| ChunkError::Corrupt {
                tenant,
                id,
                reason: error.to_string(),
            })?;
        Ok(plaintext_len)
    }

    /// Stores `plaintext` as one chunk of `tenant`, skipping the write if the tenant already has
    /// the same content.
    pub async fn write(
        &self,
        tenant: TenantId,
        addressing: &AddressingKey,
        key: &DataKey,
        plaintext: &[u8],
    ) -> Result<WrittenChunk, ChunkError> {
        self.write_buffer(
            tenant,
            addressing,
            key,
            ChunkBuffer::from_plaintext(plaintext),
        )
        .await
    }

    /// Stores the plaintext in `buffer` as one chunk of `tenant` (sealed in place), skipping the
    /// write if the tenant already has the same content.
    pub async fn write_buffer(
        &self,
        tenant: TenantId,
        addressing: &AddressingKey,
        key: &DataKey,
        buffer: ChunkBuffer,
    ) -> Result<WrittenChunk, ChunkError> {
        self.write_buffer_for(tenant, None, addressing, key, buffer)
            .await
    }

    /// Like [`Self::write_buffer`], for a writer running as `workload` (the placement policy
    /// may give a workload its own pool).
    pub async fn write_buffer_for(
        &self,
        tenant: TenantId,
        workload: Option<&str>,
        addressing: &AddressingKey,
        key: &DataKey,
        buffer: ChunkBuffer,
    ) -> Result<WrittenChunk, ChunkError> {
        let id = addressing.chunk_id(buffer.plaintext());
        let len = buffer.len() as u32;
        if self.store.contains(tenant, id).await? {
            return Ok(WrittenChunk {
                id,
                len,
                deduplicated: true,
            });
        }
        let frame = Self::seal_buffer(tenant, id, key, buffer)?;
        let placement = self.policy.placement_for(tenant, workload);
        self.store.put(tenant, id, frame, placement).await?;
        Ok(WrittenChunk {
            id,
            len,
            deduplicated: false,
        })
    }

    /// Stores a frame of chunk `id` sealed elsewhere (by a native client that holds the
    /// tenant's keys, running as `workload` when its identity names one); `true` if the tenant
    /// already had the chunk and nothing was written.
    ///
    /// Before storing, the frame is opened with the tenant's DEK of its epoch and the keyed
    /// BLAKE3 of the plaintext must equal `id`: a chunk id is a promise about content that later
    /// writes are deduplicated against, so a frame that does not keep it (a buggy or hostile
    /// client of the tenant) would turn honest writes of that content into data loss.
    pub async fn store_sealed(
        &self,
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        workload: Option<&str>,
        addressing: &AddressingKey,
        key_for_epoch: &(dyn Fn(DekEpoch) -> Option<Arc<DataKey>> + Sync),
    ) -> Result<bool, ChunkError> {
        let Some(placement) = self
            .check_upload(tenant, id, &frame, workload, addressing, key_for_epoch)
            .await?
        else {
            return Ok(true);
        };
        self.store.put(tenant, id, frame, placement).await?;
        Ok(false)
    }

    /// The checks of an uploaded frame (header, then, unless the tenant already has the chunk,
    /// the GCM open and the content address); the placement for a chunk that is new, `None`
    /// for one already stored.
    async fn check_upload(
        &self,
        tenant: TenantId,
        id: ChunkId,
        frame: &[u8],
        workload: Option<&str>,
        addressing: &AddressingKey,
        key_for_epoch: &(dyn Fn(DekEpoch) -> Option<Arc<DataKey>> + Sync),
    ) -> Result<Option<&Placement>, ChunkError> {
        let header = ChunkHeader::decode(frame, tenant, id)?;
        if self.store.contains(tenant, id).await? {
            return Ok(None);
        }
        verify_sealed(&header, frame, addressing, key_for_epoch)?;
        Ok(Some(self.policy.placement_for(tenant, workload)))
    }

    /// Checks an uploaded frame exactly as [`ChunkService::store_sealed`] does and decides how
    /// it is kept: carried in the log entry of the commit when its pool's store can keep
    /// carried frames (nothing is written now: applying the entry writes the chunk file, so a
    /// chunk file never exists without a committed entry that holds its frame), or stored
    /// durably now otherwise.
    pub async fn keep_sealed_for_log(
        &self,
        tenant: TenantId,
        id: ChunkId,
        frame: &Bytes,
        workload: Option<&str>,
        addressing: &AddressingKey,
        key_for_epoch: &(dyn Fn(DekEpoch) -> Option<Arc<DataKey>> + Sync),
    ) -> Result<SealedKept, ChunkError> {
        let Some(placement) = self
            .check_upload(tenant, id, frame, workload, addressing, key_for_epoch)
            .await?
        else {
            return Ok(SealedKept::AlreadyStored);
        };
        if self.store.carries(&placement.pool) {
            return Ok(SealedKept::ToCarry(placement.pool.clone()));
        }
        self.store.put(tenant, id, frame.clone(), placement).await?;
        Ok(SealedKept::Stored)
    }

    /// Reads chunk `id` of `tenant` as a sealed frame, its header checked, for a native client
    /// that opens it itself. The body's checksum is left to that client: the authentication
    /// tag it checks covers every body byte (a damaged chunk is refused there, never served as
    /// data), and a pass of our own over every frame sent cost 14 % of the server's CPU on
    /// a streaming read. With `check_body` the body's checksum is checked too: the second look
    /// at a frame a client could not open, which tells a copy damaged on disk from one damaged
    /// on its way.
    pub async fn read_sealed(
        &self,
        tenant: TenantId,
        id: ChunkId,
        check_body: bool,
    ) -> Result<Bytes, ChunkError> {
        let frame = self.store.get(tenant, id).await?;
        if check_body {
            ChunkHeader::decode(&frame, tenant, id)?;
        } else {
            ChunkHeader::decode_header(&frame, tenant, id)?;
        }
        Ok(frame)
    }

    /// Reads, verifies and decrypts chunk `id` of `tenant`.
    pub async fn read(
        &self,
        tenant: TenantId,
        id: ChunkId,
        key_for_epoch: &(dyn Fn(DekEpoch) -> Option<Arc<DataKey>> + Sync),
    ) -> Result<Bytes, ChunkError> {
        let frame = self.store.get(tenant, id).await?;
        Self::open(tenant, id, frame, key_for_epoch)
    }
}

/// Largest scratch buffer a thread keeps between upload checks (a default 4 MiB chunk fits).
const VERIFY_SCRATCH_KEPT_BYTES_MAX: usize = 8 << 20;

thread_local! {
    /// Where uploaded frames are opened for their check: reused, so a check allocates nothing.
    static VERIFY_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Opens the body of `frame` (whose `header` is checked) and compares the keyed BLAKE3 of the
/// plaintext with the chunk id. The frame itself must be stored as received, so its body is
/// decrypted into a per-thread scratch buffer (no copy of the ciphertext first) and hashed
/// there.
fn verify_sealed(
    header: &ChunkHeader,
    frame: &[u8],
    addressing: &AddressingKey,
    key_for_epoch: &(dyn Fn(DekEpoch) -> Option<Arc<DataKey>> + Sync),
) -> Result<(), ChunkError> {
    let (tenant, id) = (header.tenant, header.id);
    let rejected = |reason: String| ChunkError::Corrupt {
        tenant,
        id,
        reason: format!("uploaded frame rejected: {reason}"),
    };
    let key = key_for_epoch(header.epoch).ok_or(ChunkError::MissingKey {
        tenant,
        id,
        epoch: header.epoch.0,
    })?;
    let sealed = &frame[HEADER_BYTES..];
    let plaintext_len = sealed.len().saturating_sub(TAG_BYTES);
    let open_and_address = |plaintext: &mut [u8]| {
        kiseki_crypto::open_into(
            &key,
            header.nonce,
            &associated_data(tenant, id),
            sealed,
            plaintext,
        )
        .map(|()| addressing.chunk_id(plaintext))
        .map_err(|error| rejected(error.to_string()))
    };
    let content_id = if plaintext_len > VERIFY_SCRATCH_KEPT_BYTES_MAX {
        open_and_address(&mut vec![0; plaintext_len])?
    } else {
        VERIFY_SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            if scratch.len() < plaintext_len {
                scratch.resize(plaintext_len, 0);
            }
            open_and_address(&mut scratch[..plaintext_len])
        })?
    };
    if content_id != id {
        return Err(rejected(format!(
            "its plaintext has content address {content_id}"
        )));
    }
    Ok(())
}
