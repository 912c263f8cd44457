//! One request to the agent over its Unix socket, and its JSON-line replies (bounded).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kiseki_client::agent::protocol::{Reply, Request, REPLY_BYTES_MAX};

/// A connection carrying one request.
pub struct Connection {
    reader: BufReader<UnixStream>,
    socket: String,
}

impl Connection {
    /// Connects; `timeout` bounds every read and write (none: wait as long as the agent works).
    pub fn open(socket: &Path, timeout: Option<Duration>) -> anyhow::Result<Connection> {
        let stream = UnixStream::connect(socket).with_context(|| {
            format!(
                "no cache agent answers at {} (is kiseki-client-fuse running on this node? \
                 --socket or KISEKI_AGENT_SOCKET name another socket)",
                socket.display()
            )
        })?;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(Some(timeout.unwrap_or(Duration::from_secs(10))))?;
        Ok(Connection {
            reader: BufReader::new(stream),
            socket: socket.display().to_string(),
        })
    }

    /// Sends the request line.
    pub fn send(&mut self, request: &Request) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .with_context(|| format!("sending to the agent at {}", self.socket))
    }

    /// The next reply; `None` when the agent closed the connection.
    pub fn next(&mut self) -> anyhow::Result<Option<Reply>> {
        let mut line = Vec::new();
        let mut limited = (&mut self.reader).take(REPLY_BYTES_MAX as u64 + 1);
        let read = limited
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading from the agent at {}", self.socket))?;
        if read == 0 {
            return Ok(None);
        }
        anyhow::ensure!(
            line.len() <= REPLY_BYTES_MAX,
            "reply from the agent longer than {REPLY_BYTES_MAX} bytes"
        );
        Ok(Some(
            serde_json::from_slice(&line).context("malformed reply from the agent")?,
        ))
    }

    /// Sends `request` and returns its one reply; an error reply becomes an error.
    pub fn call(mut self, request: &Request) -> anyhow::Result<Reply> {
        self.send(request)?;
        match self.next()? {
            Some(Reply::Error { message, .. }) => anyhow::bail!("{message}"),
            Some(reply) => Ok(reply),
            None => anyhow::bail!("the agent closed the connection without a reply"),
        }
    }
}
