//! The native bulk channel: sealed chunk frames over plain TCP, beside the TLS gRPC service.
//!
//! Chunk frames are AES-256-GCM ciphertext whose associated data binds tenant and chunk id, so
//! a frame is as safe on a plain connection as inside TLS: an observer sees ciphertext and
//! chunk ids (keyed content addresses), a tampered or swapped frame fails to open. Encrypting
//! it a second time for TLS costs both ends a cipher pass and three copies. Only chunk frames
//! travel here; metadata, keys and credentials stay on the TLS channel. Like an RDMA transport,
//! the channel has no record encryption; unlike a bare one, every connection is authenticated:
//!
//! 1. Over TLS the client calls `OpenBulkSession`; the server answers port, session id and a
//!    session key, bound to the caller's identity and IP address.
//! 2. On a new TCP connection the server sends [`MAGIC`] and a fresh nonce; the client answers
//!    the session id and `HMAC-SHA256(key, MAGIC | nonce | session id)`; the server replies
//!    with a reply header (status, message).
//! 3. Then, one at a time: request `[op][chunk id][u32 BE body length]` and the body, reply
//!    header `[status][u32 BE length]` and that many bytes: for [`OP_GET_CHUNK`] the sealed
//!    frame, for [`OP_PUT_CHUNK`] (body: the sealed frame, which the server verifies as it does
//!    over TLS) one byte, 1 if the server had the chunk already; or a UTF-8 error message.

use bytes::{Buf, Bytes, BytesMut};
use kiseki_types::ErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt};

/// First bytes the server sends on a connection (protocol and version).
pub const MAGIC: &[u8; 8] = b"KSKBULK1";
/// Bytes of the server's nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a session id.
pub const SESSION_ID_BYTES: usize = 16;
/// Bytes of the client's hello: session id and proof.
pub const CLIENT_HELLO_BYTES: usize = SESSION_ID_BYTES + kiseki_crypto::CHANNEL_PROOF_BYTES;
/// Fetch a sealed chunk frame.
pub const OP_GET_CHUNK: u8 = 1;
/// Store a sealed chunk frame.
pub const OP_PUT_CHUNK: u8 = 2;
/// Bytes of a request header: operation, chunk id, body length.
pub const REQUEST_BYTES: usize = 1 + 32 + 4;

/// A request header.
pub fn request_header(op: u8, id: &[u8; 32], body_len: u32) -> [u8; REQUEST_BYTES] {
    let mut header = [0u8; REQUEST_BYTES];
    header[0] = op;
    header[1..33].copy_from_slice(id);
    header[33..].copy_from_slice(&body_len.to_be_bytes());
    header
}

/// Operation, chunk id and body length of a request header.
pub fn parse_request_header(header: &[u8; REQUEST_BYTES]) -> (u8, [u8; 32], u32) {
    let mut id = [0u8; 32];
    id.copy_from_slice(&header[1..33]);
    (
        header[0],
        id,
        u32::from_be_bytes([header[33], header[34], header[35], header[36]]),
    )
}
/// Bytes of a reply header: status and payload length.
pub const REPLY_HEADER_BYTES: usize = 5;
/// Longest error message a reply carries.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 4096;

/// The bytes a proof covers.
pub fn proof_context(
    nonce: &[u8; NONCE_BYTES],
    session_id: &[u8; SESSION_ID_BYTES],
) -> [u8; 8 + NONCE_BYTES + SESSION_ID_BYTES] {
    let mut context = [0u8; 8 + NONCE_BYTES + SESSION_ID_BYTES];
    context[..8].copy_from_slice(MAGIC);
    context[8..8 + NONCE_BYTES].copy_from_slice(nonce);
    context[8 + NONCE_BYTES..].copy_from_slice(session_id);
    context
}

/// Status byte of a successful reply.
pub const STATUS_OK: u8 = 0;

/// The status byte for an error of `kind`.
pub fn status_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => 1,
        ErrorKind::PermissionDenied => 2,
        ErrorKind::Corrupt => 3,
        ErrorKind::Unavailable => 4,
        ErrorKind::InvalidArgument => 5,
        ErrorKind::Stale => 6,
        _ => 7,
    }
}

/// The error kind of a status byte other than [`STATUS_OK`].
pub fn kind_of(status: u8) -> ErrorKind {
    match status {
        1 => ErrorKind::NotFound,
        2 => ErrorKind::PermissionDenied,
        3 => ErrorKind::Corrupt,
        4 => ErrorKind::Unavailable,
        5 => ErrorKind::InvalidArgument,
        6 => ErrorKind::Stale,
        _ => ErrorKind::Unavailable,
    }
}

/// A reply header.
pub fn reply_header(status: u8, len: u32) -> [u8; REPLY_HEADER_BYTES] {
    let mut header = [0u8; REPLY_HEADER_BYTES];
    header[0] = status;
    header[1..].copy_from_slice(&len.to_be_bytes());
    header
}

/// Status and length of a reply header.
pub fn parse_reply_header(header: &[u8; REPLY_HEADER_BYTES]) -> (u8, u32) {
    (
        header[0],
        u32::from_be_bytes([header[1], header[2], header[3], header[4]]),
    )
}

/// Memory alignment of payloads from [`read_payload`]: a page, which covers the direct-I/O
/// alignment of every common disk.
pub const PAYLOAD_ALIGN: usize = 4096;

/// The next `len` bytes of `stream` (a request body or a reply payload), read straight into
/// one buffer: no zero-fill, no further copy. The buffer starts at a [`PAYLOAD_ALIGN`]
/// boundary, so a chunk store can write a received frame with direct I/O as it is.
pub async fn read_payload<R: AsyncRead + Unpin>(
    stream: &mut R,
    len: usize,
) -> std::io::Result<Bytes> {
    let mut buffer = BytesMut::with_capacity(len + PAYLOAD_ALIGN);
    let skip = buffer
        .as_ptr()
        .align_offset(PAYLOAD_ALIGN)
        .min(PAYLOAD_ALIGN);
    buffer.resize(skip, 0);
    buffer.advance(skip); // moves the start within the allocation, no copy
    while buffer.len() < len {
        let want = (len - buffer.len()) as u64;
        if (&mut *stream).take(want).read_buf(&mut buffer).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_a_client_acts_on_survives_the_wire() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::Corrupt,
            ErrorKind::Unavailable,
            ErrorKind::InvalidArgument,
            ErrorKind::Stale,
        ] {
            assert_ne!(status_of(kind), STATUS_OK);
            assert_eq!(kind_of(status_of(kind)), kind);
        }
        let header = reply_header(3, 4 << 20);
        assert_eq!(parse_reply_header(&header), (3, 4 << 20));
        let request = request_header(OP_PUT_CHUNK, &[5; 32], 77);
        assert_eq!(parse_request_header(&request), (OP_PUT_CHUNK, [5; 32], 77));
    }

    #[tokio::test]
    async fn payloads_arrive_whole_and_page_aligned_however_the_stream_splits_them() {
        let data: Vec<u8> = (0..(1 << 20) + 77).map(|i| (i % 251) as u8).collect();
        for len in [0, 1, 4096, data.len()] {
            let (mut writer, mut reader) = tokio::io::duplex(1000);
            let sent = data[..len].to_vec();
            let send = tokio::spawn(async move {
                tokio::io::AsyncWriteExt::write_all(&mut writer, &sent).await
            });
            let payload = read_payload(&mut reader, len).await.unwrap();
            send.await.unwrap().unwrap();
            assert_eq!(&payload[..], &data[..len]);
            if len > 0 {
                assert_eq!(
                    payload.as_ptr().align_offset(PAYLOAD_ALIGN),
                    0,
                    "length {len}"
                );
            }
        }
        let (writer, mut reader) = tokio::io::duplex(64);
        drop(writer);
        let short = read_payload(&mut reader, 10).await.unwrap_err();
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
