//! Chunk frames on the native protocol's streams: cut into pieces of at most
//! [`CHUNK_PIECE_BYTES`] (a default-sized chunk travels as one piece) and put back together on
//! the other side. Pieces are `Bytes` slices of the frame, and a frame that arrives as one
//! piece is used as received, so the common case copies no frame bytes outside the transport.

use bytes::{Bytes, BytesMut};

use crate::CHUNK_PIECE_BYTES;

/// A chunk frame stream that did not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameAssemblyError {
    /// The announced length is beyond what the receiver accepts.
    #[error("chunk frame of {announced} bytes announced, at most {max} accepted")]
    TooLarge {
        /// Announced bytes.
        announced: u64,
        /// Largest frame accepted.
        max: usize,
    },
    /// More bytes arrived than announced.
    #[error("chunk frame longer than the {announced} bytes announced")]
    Longer {
        /// Announced bytes.
        announced: usize,
    },
    /// The stream ended early.
    #[error("chunk frame of {received} bytes, {announced} announced")]
    Shorter {
        /// Bytes received.
        received: usize,
        /// Announced bytes.
        announced: usize,
    },
}

/// The pieces `frame` travels in (at least one, so an empty frame still announces itself).
pub fn frame_pieces(frame: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let count = frame.len().div_ceil(CHUNK_PIECE_BYTES).max(1);
    (0..count).map(move |index| {
        let start = index * CHUNK_PIECE_BYTES;
        frame.slice(start..(start + CHUNK_PIECE_BYTES).min(frame.len()))
    })
}

/// Puts a frame back together from its pieces.
#[derive(Debug)]
pub struct FrameAssembler {
    announced: usize,
    single: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl FrameAssembler {
    /// Expects a frame of `announced` bytes, refusing more than `max`.
    pub fn new(announced: u64, max: usize) -> Result<Self, FrameAssemblyError> {
        let too_large = FrameAssemblyError::TooLarge { announced, max };
        let announced = usize::try_from(announced).map_err(|_| too_large.clone())?;
        if announced > max {
            return Err(too_large);
        }
        Ok(FrameAssembler {
            announced,
            single: None,
            joined: None,
        })
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        match (&self.single, &self.joined) {
            (_, Some(joined)) => joined.len(),
            (Some(single), None) => single.len(),
            (None, None) => 0,
        }
    }

    /// Whether nothing arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the next piece.
    pub fn push(&mut self, piece: Bytes) -> Result<(), FrameAssemblyError> {
        if self.len() + piece.len() > self.announced {
            return Err(FrameAssemblyError::Longer {
                announced: self.announced,
            });
        }
        if let Some(joined) = &mut self.joined {
            joined.extend_from_slice(&piece);
        } else if let Some(first) = self.single.take() {
            let mut joined = BytesMut::with_capacity(self.announced);
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&piece);
            self.joined = Some(joined);
        } else {
            self.single = Some(piece);
        }
        Ok(())
    }

    /// The whole frame, once every announced byte arrived.
    pub fn finish(self) -> Result<Bytes, FrameAssemblyError> {
        let received = self.len();
        if received != self.announced {
            return Err(FrameAssemblyError::Shorter {
                received,
                announced: self.announced,
            });
        }
        Ok(match (self.single, self.joined) {
            (_, Some(joined)) => joined.freeze(),
            (Some(single), None) => single,
            (None, None) => Bytes::new(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn round_trip(len: usize) -> Bytes {
        let frame = Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
        let mut assembler = FrameAssembler::new(len as u64, 64 << 20).unwrap();
        for piece in frame_pieces(&frame) {
            assert!(piece.len() <= CHUNK_PIECE_BYTES);
            assembler.push(piece).unwrap();
        }
        let back = assembler.finish().unwrap();
        assert_eq!(back, frame, "length {len}");
        back
    }

    #[test]
    fn frames_of_any_length_come_back_whole() {
        for len in [
            0,
            1,
            CHUNK_PIECE_BYTES - 1,
            CHUNK_PIECE_BYTES,
            CHUNK_PIECE_BYTES + 1,
        ] {
            round_trip(len);
        }
        round_trip(3 * CHUNK_PIECE_BYTES + 17);
    }

    #[test]
    fn a_default_chunk_travels_as_one_uncopied_piece() {
        let frame = Bytes::from(vec![7u8; (4 << 20) + 120]);
        let pieces: Vec<Bytes> = frame_pieces(&frame).collect();
        assert_eq!(pieces.len(), 1);
        let mut assembler = FrameAssembler::new(frame.len() as u64, 64 << 20).unwrap();
        assembler.push(pieces[0].clone()).unwrap();
        let back = assembler.finish().unwrap();
        assert_eq!(back.as_ptr(), frame.as_ptr(), "no copy");
    }

    #[test]
    fn streams_that_do_not_add_up_are_refused() {
        assert!(matches!(
            FrameAssembler::new(100, 10),
            Err(FrameAssemblyError::TooLarge { .. })
        ));
        let mut assembler = FrameAssembler::new(4, 10).unwrap();
        assembler.push(Bytes::from_static(b"abc")).unwrap();
        assert!(matches!(
            assembler.push(Bytes::from_static(b"de")),
            Err(FrameAssemblyError::Longer { .. })
        ));
        assert_eq!(
            assembler.finish().unwrap_err(),
            FrameAssemblyError::Shorter {
                received: 3,
                announced: 4
            }
        );
    }
}
