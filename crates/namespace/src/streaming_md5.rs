//! The MD5 of a streamed object body (its S3 ETag), taken off the request's task once the body
//! is large: MD5 runs at about one byte per CPU cycle and cannot be parallelised within one
//! object, so on a large PUT it is the slowest stage. Hashing on its own thread lets it overlap
//! with receiving, sealing and storing the chunks instead of adding to them.

use bytes::Bytes;
use kiseki_types::{ErrorKind, NamespaceError};
use md5::{Digest, Md5};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes hashed inline before the digest moves to its own thread (small objects stay inline:
/// a thread hand-off costs more than hashing them).
const INLINE_BYTES_MAX: u64 = 1 << 20;
/// Pieces queued for the hashing thread; bounds the memory a slow hash can pin.
const PIECES_QUEUED_MAX: usize = 16;

enum State {
    Inline(Md5),
    Offloaded {
        pieces: mpsc::Sender<Bytes>,
        hasher: JoinHandle<Md5>,
    },
    Done,
}

/// An MD5 fed piece by piece.
pub(crate) struct StreamingMd5 {
    state: State,
    hashed: u64,
}

impl StreamingMd5 {
    pub(crate) fn new() -> Self {
        StreamingMd5 {
            state: State::Inline(Md5::new()),
            hashed: 0,
        }
    }

    /// Adds `piece`.
    pub(crate) async fn update(&mut self, piece: Bytes) -> Result<(), NamespaceError> {
        self.hashed += piece.len() as u64;
        if let State::Inline(digest) = &mut self.state {
            if self.hashed <= INLINE_BYTES_MAX {
                digest.update(&piece);
                return Ok(());
            }
            let digest = std::mem::replace(digest, Md5::new());
            self.state = offload(digest);
        }
        match &self.state {
            State::Offloaded { pieces, .. } => pieces.send(piece).await.map_err(|_| stopped()),
            State::Inline(_) | State::Done => Err(stopped()),
        }
    }

    /// The digest in lowercase hex.
    pub(crate) async fn finish(mut self) -> Result<String, NamespaceError> {
        let digest = match std::mem::replace(&mut self.state, State::Done) {
            State::Inline(digest) => digest,
            State::Offloaded { pieces, hasher } => {
                drop(pieces);
                hasher.await.map_err(|_| stopped())?
            }
            State::Done => return Err(stopped()),
        };
        Ok(hex::encode(digest.finalize()))
    }
}

fn offload(mut digest: Md5) -> State {
    let (pieces, mut queue) = mpsc::channel::<Bytes>(PIECES_QUEUED_MAX);
    let hasher = tokio::task::spawn_blocking(move || {
        while let Some(piece) = queue.blocking_recv() {
            digest.update(&piece);
        }
        digest
    });
    State::Offloaded { pieces, hasher }
}

fn stopped() -> NamespaceError {
    NamespaceError::new(ErrorKind::Unavailable, "the body's MD5 task stopped")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_digest_is_the_same_inline_and_offloaded() {
        let body: Vec<u8> = (0..3 * INLINE_BYTES_MAX as usize + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut streamed = StreamingMd5::new();
        for piece in body.chunks(64 * 1024 + 3) {
            streamed
                .update(Bytes::copy_from_slice(piece))
                .await
                .unwrap();
        }
        assert_eq!(
            streamed.finish().await.unwrap(),
            hex::encode(Md5::digest(&body))
        );
        let mut small = StreamingMd5::new();
        small.update(Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(
            small.finish().await.unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }
}
