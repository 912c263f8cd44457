//! Request and response bodies, streamed: a PUT body goes piece by piece into an
//! [`ObjectWriter`] (a few chunks in memory at most), a GET body is produced piece by piece by
//! a [`RangeReader`] through a channel of two pieces.

use futures::StreamExt;
use kiseki_namespace::object::ObjectWriter;
use kiseki_namespace::{RangeReader, WrittenData};
use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Result};
use tokio_stream::wrappers::ReceiverStream;

use super::convert::base64;
use super::error::namespace_error;

/// Pieces of a GET body queued ahead of the client.
const RESPONSE_PIECES_QUEUED_MAX: usize = 2;

/// Stores `body` (at most `bytes_max` bytes); returns the extents and the MD5 (hex), after
/// checking it against `Content-MD5` when the client sent one.
pub async fn store(
    mut writer: ObjectWriter,
    body: Option<StreamingBlob>,
    bytes_max: u64,
    content_md5: Option<&str>,
) -> S3Result<(WrittenData, String)> {
    if let Some(mut body) = body {
        while let Some(piece) = body.next().await {
            let piece = piece
                .map_err(|error| s3_error!(IncompleteBody, "reading the request body: {error}"))?;
            if writer.len() + piece.len() as u64 > bytes_max {
                return Err(s3_error!(
                    EntityTooLarge,
                    "bodies are limited to {bytes_max} bytes"
                ));
            }
            writer.write(piece).await.map_err(namespace_error)?;
        }
    }
    let (data, md5) = writer.finish().await.map_err(namespace_error)?;
    if let Some(expected) = content_md5 {
        let actual = hex::decode(&md5)
            .map(|bytes| base64(&bytes))
            .unwrap_or_default();
        if expected.trim() != actual {
            return Err(s3_error!(
                BadDigest,
                "Content-MD5 {expected} does not match the body ({actual})"
            ));
        }
    }
    Ok((data, md5))
}

/// A response body streaming the reader's pieces. A read error ends the body early (the
/// client sees a short response, never wrong bytes).
pub fn stream(mut reader: RangeReader) -> StreamingBlob {
    let (sender, receiver) = tokio::sync::mpsc::channel(RESPONSE_PIECES_QUEUED_MAX);
    tokio::spawn(async move {
        while let Some(piece) = reader.next_piece().await {
            let failed = piece.is_err();
            if let Err(error) = &piece {
                tracing::error!(%error, "S3 GET: reading the object failed");
            }
            if sender.send(piece).await.is_err() || failed {
                return;
            }
        }
    });
    StreamingBlob::wrap(ReceiverStream::new(receiver))
}
