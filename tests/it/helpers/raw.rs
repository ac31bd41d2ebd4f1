//! A raw HTTP/1.1 client, for when the bytes sent matter.
//!
//! It writes a request over a plain TCP socket byte for byte as given, so paths such as
//! `/assets/../Cargo.toml` reach the server as written (a URL library would normalise them away)
//! and bodies and header values can hold any bytes. It reads the answer's head, then undoes
//! `Content-Length` or chunked framing as the body arrives, so an event stream can be read event
//! by event through [`raw_sse`](super::raw_sse).
//!
//! `hostile.rs` sends its tables through it. Every other test speaks to the server through
//! [`TestApp`]'s reqwest client.

use std::io;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    task::JoinHandle,
};

use super::{
    TestApp,
    raw_sse::{RawEvent, SseParser},
};

/// A request exactly as it goes out: nothing is normalised, checked or escaped.
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target exactly as sent.
    pub path: &'a str,
    pub headers: &'a [(&'a str, Vec<u8>)],
    pub body: &'a [u8],
    /// Whether the answer is an event stream, read as it arrives: the connection is then kept
    /// open; otherwise it is asked to close after the answer (`Connection: close`).
    pub stream: bool,
}

/// The request's bytes: its line, `Host`, `Connection: close` unless it opens a stream,
/// `Content-Length` when it has a body or is not a GET, its own headers, then its body.
pub fn request_bytes(app: &TestApp, request: &Request) -> Vec<u8> {
    let host = app.base_url.trim_start_matches("http://");
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\n",
        request.method, request.path
    )
    .into_bytes();
    if !request.stream {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !request.body.is_empty() || request.method != "GET" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", request.body.len()).as_bytes());
    }
    for (name, value) in request.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(request.body);
    out
}

/// An answer read in full.
pub struct Answer {
    pub status: u16,
    /// The media type, lower case, without parameters.
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends a request and reads the whole answer.
pub async fn send(app: &TestApp, request: &Request<'_>) -> io::Result<Answer> {
    open(app, request).await?.into_answer().await
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    Chunked(Chunk),
    Close,
}

#[derive(Debug)]
enum Chunk {
    /// Waiting for a size line.
    Size,
    /// This many data bytes still to come, then a CRLF.
    Data(usize),
    /// The CRLF after a chunk's data.
    End,
}

/// An answer whose head has been read; its body arrives as it is sent.
pub struct Conn {
    pub status: u16,
    headers: Vec<(String, String)>,
    read: OwnedReadHalf,
    /// Keeps the write half open (dropping it would half-close the connection) and writes the
    /// request while the answer is read, so a server that answers before reading it all (413)
    /// does not block the write.
    _writer: JoinHandle<OwnedWriteHalf>,
    /// Received bytes not yet de-framed.
    raw: Vec<u8>,
    framing: Framing,
    body: Vec<u8>,
    complete: bool,
}

/// Sends a request and reads the answer's head; the body is read as it is asked for.
pub async fn open(app: &TestApp, request: &Request<'_>) -> io::Result<Conn> {
    let addr = app.base_url.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    let request = request_bytes(app, request);
    let writer = tokio::spawn(async move {
        // A server may refuse before reading the whole body and close: that is its right.
        let _ = write.write_all(&request).await;
        let _ = write.flush().await;
        write
    });
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&raw, b"\r\n\r\n") {
            break at;
        }
        raw.reserve(16 * 1024);
        let n = read.read_buf(&mut raw).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before an answer ({} bytes: {:?})",
                    raw.len(),
                    String::from_utf8_lossy(&raw)
                ),
            ));
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    raw.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("a bad status line: {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let framing = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        Framing::Chunked(Chunk::Size)
    } else if let Some(length) = header("content-length") {
        Framing::Length(
            length
                .parse()
                .map_err(|_| io::Error::other("a bad Content-Length"))?,
        )
    } else {
        Framing::Close
    };
    let mut conn = Conn {
        status,
        headers,
        read,
        _writer: writer,
        raw,
        framing,
        body: Vec::new(),
        complete: false,
    };
    conn.deframe()?;
    Ok(conn)
}

impl Conn {
    /// The media type, lower case, without parameters.
    pub fn content_type(&self) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == "content-type")
            .map(|(_, v)| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default()
    }

    /// Moves what has arrived from `raw` to `body`, undoing the framing.
    fn deframe(&mut self) -> io::Result<()> {
        loop {
            match &mut self.framing {
                Framing::Close => {
                    self.body.append(&mut self.raw);
                    return Ok(());
                }
                Framing::Length(left) => {
                    let take = (*left).min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    *left -= take;
                    self.complete = *left == 0;
                    return Ok(());
                }
                Framing::Chunked(state) => match state {
                    Chunk::Size => {
                        let Some(end) = find(&self.raw, b"\r\n") else {
                            return Ok(());
                        };
                        let line = String::from_utf8_lossy(&self.raw[..end]).into_owned();
                        let size = line.split(';').next().unwrap_or_default().trim();
                        let size = usize::from_str_radix(size, 16).map_err(|_| {
                            io::Error::other(format!("a bad chunk size line: {line:?}"))
                        })?;
                        self.raw.drain(..end + 2);
                        if size == 0 {
                            self.complete = true;
                            return Ok(());
                        }
                        *state = Chunk::Data(size);
                    }
                    Chunk::Data(left) => {
                        let take = (*left).min(self.raw.len());
                        if take == 0 {
                            return Ok(());
                        }
                        self.body.extend(self.raw.drain(..take));
                        *left -= take;
                        if *left == 0 {
                            *state = Chunk::End;
                        }
                    }
                    Chunk::End => {
                        if self.raw.len() < 2 {
                            return Ok(());
                        }
                        if &self.raw[..2] != b"\r\n" {
                            return Err(io::Error::other("a chunk without its CRLF"));
                        }
                        self.raw.drain(..2);
                        *state = Chunk::Size;
                    }
                },
            }
        }
    }

    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> io::Result<bool> {
        self.raw.reserve(64 * 1024);
        if self.read.read_buf(&mut self.raw).await? == 0 {
            return Ok(false);
        }
        self.deframe()?;
        Ok(true)
    }

    /// Reads the rest of the body.
    pub async fn into_answer(mut self) -> io::Result<Answer> {
        while !self.complete {
            if !self.fill().await? {
                if matches!(self.framing, Framing::Close) {
                    break;
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the body ended early after {} bytes", self.body.len()),
                ));
            }
        }
        Ok(Answer {
            status: self.status,
            content_type: self.content_type(),
            body: self.body,
        })
    }

    /// The next event of an event stream, or `None` when it ends.
    pub async fn next_event(&mut self, parser: &mut SseParser) -> io::Result<Option<RawEvent>> {
        loop {
            parser.feed(&std::mem::take(&mut self.body));
            if let Some(event) = parser.ready.pop_front() {
                return Ok(Some(event));
            }
            if self.complete || !self.fill().await? {
                return Ok(None);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
