//! ONC RPC v2 (RFC 5531) over TCP: record marking, call headers, AUTH_SYS credentials, reply
//! headers, and the per-connection loop. Calls on one connection run concurrently (bounded);
//! replies go back in completion order, as RPC allows (the xid pairs them).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use super::xdr::{Reader, Writer, XdrError};

/// The NFS program number.
pub const PROGRAM_NFS: u32 = 100_003;
/// The MOUNT program number.
pub const PROGRAM_MOUNT: u32 = 100_005;

/// Largest RPC record accepted: one maximal WRITE plus headers.
pub const RECORD_BYTES_MAX: usize = super::IO_BYTES_MAX as usize + 64 * 1024;
/// Calls of one connection being served at once.
const CALLS_IN_FLIGHT_MAX: usize = 16;
/// Replies of one connection waiting to be written.
const REPLIES_QUEUED_MAX: usize = 32;

const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;
const AUTH_SYS_GROUPS_MAX: usize = 16;
const AUTH_BODY_BYTES_MAX: usize = 400;

/// Who the caller says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// AUTH_NONE (or a flavor the server does not know).
    Anonymous,
    /// AUTH_SYS: the client's uid, gid and supplementary groups.
    Sys {
        /// User id.
        uid: u32,
        /// Primary group id.
        gid: u32,
        /// Supplementary groups.
        groups: Vec<u32>,
    },
}

/// A decoded call header; the arguments follow at `args_offset` of the record.
#[derive(Debug)]
pub struct CallHeader {
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// Program number.
    pub program: u32,
    /// Program version.
    pub version: u32,
    /// Procedure number.
    pub procedure: u32,
    /// The caller's credential.
    pub credential: Credential,
    /// Where the procedure's arguments start in the record.
    pub args_offset: usize,
}

/// What a call is answered with, besides success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The program is not served.
    ProgramUnavailable,
    /// The version is not served; the range that is.
    ProgramMismatch(u32, u32),
    /// The procedure does not exist.
    ProcedureUnavailable,
    /// The arguments could not be decoded.
    GarbageArgs,
}

/// Decodes the header of a call record.
pub fn parse_call(record: &[u8]) -> Result<CallHeader, XdrError> {
    let mut reader = Reader::new(record);
    let xid = reader.u32()?;
    if reader.u32()? != 0 {
        return Err(XdrError("not a call"));
    }
    if reader.u32()? != 2 {
        return Err(XdrError("RPC version is not 2"));
    }
    let (program, version, procedure) = (reader.u32()?, reader.u32()?, reader.u32()?);
    let flavor = reader.u32()?;
    let body = reader.opaque(AUTH_BODY_BYTES_MAX)?;
    let credential = match flavor {
        AUTH_SYS => parse_auth_sys(body)?,
        _ => Credential::Anonymous,
    };
    let _verifier_flavor = reader.u32()?;
    reader.skip_opaque(AUTH_BODY_BYTES_MAX)?;
    let args_offset = record.len() - reader.remaining();
    Ok(CallHeader {
        xid,
        program,
        version,
        procedure,
        credential,
        args_offset,
    })
}

fn parse_auth_sys(body: &[u8]) -> Result<Credential, XdrError> {
    let mut reader = Reader::new(body);
    let _stamp = reader.u32()?;
    reader.skip_opaque(255)?;
    let (uid, gid) = (reader.u32()?, reader.u32()?);
    let count = reader.u32()? as usize;
    if count > AUTH_SYS_GROUPS_MAX {
        return Err(XdrError("too many groups in AUTH_SYS"));
    }
    let groups = (0..count).map(|_| reader.u32()).collect::<Result<_, _>>()?;
    Ok(Credential::Sys { uid, gid, groups })
}

/// The start of a successful reply to `xid`; the procedure's results follow.
pub fn success_header(xid: u32, body_capacity: usize) -> Writer {
    let mut writer = Writer::with_capacity(24 + body_capacity);
    writer.u32(xid).u32(1).u32(0).u32(AUTH_NONE).u32(0).u32(0);
    writer
}

/// A complete reply refusing the call.
pub fn refusal(xid: u32, refusal: Refusal) -> Vec<u8> {
    let mut writer = Writer::with_capacity(32);
    writer.u32(xid).u32(1).u32(0).u32(AUTH_NONE).u32(0);
    match refusal {
        Refusal::ProgramUnavailable => writer.u32(1),
        Refusal::ProgramMismatch(low, high) => writer.u32(2).u32(low).u32(high),
        Refusal::ProcedureUnavailable => writer.u32(3),
        Refusal::GarbageArgs => writer.u32(4),
    };
    writer.into_bytes()
}

/// Serves RPC calls; implemented by the NFS service.
pub trait Dispatch: Send + Sync + 'static {
    /// Answers one call record from `peer`; `None` sends no reply (undecodable header).
    fn dispatch(
        self: Arc<Self>,
        peer: IpAddr,
        record: Vec<u8>,
    ) -> impl std::future::Future<Output = Option<Vec<u8>>> + Send;
}

/// Serves one TCP connection until the client closes it or sends a malformed record.
pub async fn serve_connection<D: Dispatch>(stream: TcpStream, peer: SocketAddr, service: Arc<D>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (replies, mut outgoing) = mpsc::channel::<Vec<u8>>(REPLIES_QUEUED_MAX);
    let sender = tokio::spawn(async move {
        while let Some(reply) = outgoing.recv().await {
            let mark = (reply.len() as u32 | 0x8000_0000).to_be_bytes();
            if writer.write_all(&mark).await.is_err() || writer.write_all(&reply).await.is_err() {
                return;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(CALLS_IN_FLIGHT_MAX));
    let peer_ip = peer.ip().to_canonical();
    loop {
        let record = match read_record(&mut reader).await {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%peer, %error, "closing NFS connection");
                break;
            }
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (service, replies) = (Arc::clone(&service), replies.clone());
        tokio::spawn(async move {
            if let Some(reply) = service.dispatch(peer_ip, record).await {
                let _ = replies.send(reply).await;
            }
            drop(permit);
        });
    }
    drop(replies);
    let _ = sender.await;
}

/// Reads one record (all its fragments); `None` at a clean end of stream.
async fn read_record(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut record = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        match reader.read_exact(&mut mark).await {
            Ok(_) => {}
            Err(error)
                if error.kind() == std::io::ErrorKind::UnexpectedEof && record.is_empty() =>
            {
                return Ok(None)
            }
            Err(error) => return Err(error),
        }
        let mark = u32::from_be_bytes(mark);
        let len = (mark & 0x7fff_ffff) as usize;
        if record.len() + len > RECORD_BYTES_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "RPC record over the size limit",
            ));
        }
        let start = record.len();
        record.resize(start + len, 0);
        reader.read_exact(&mut record[start..]).await?;
        if mark & 0x8000_0000 != 0 {
            return Ok(Some(record));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_auth_sys_call_header_decodes() {
        let mut writer = Writer::default();
        writer.u32(42).u32(0).u32(2).u32(PROGRAM_NFS).u32(3).u32(1);
        let mut auth = Writer::default();
        auth.u32(0)
            .string("login1")
            .u32(1000)
            .u32(100)
            .u32(2)
            .u32(10)
            .u32(20);
        writer
            .u32(AUTH_SYS)
            .opaque(&auth.into_bytes())
            .u32(AUTH_NONE)
            .u32(0)
            .u32(0xdead);
        let record = writer.into_bytes();
        let header = parse_call(&record).unwrap();
        assert_eq!(
            (header.xid, header.program, header.version, header.procedure),
            (42, PROGRAM_NFS, 3, 1)
        );
        assert_eq!(
            header.credential,
            Credential::Sys {
                uid: 1000,
                gid: 100,
                groups: vec![10, 20]
            }
        );
        assert_eq!(&record[header.args_offset..], &0xdeadu32.to_be_bytes());
    }
}
