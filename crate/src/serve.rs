//! A small static file server for the page (`epsvae serve`): GET and HEAD of files under one
//! folder, with the MIME types browsers insist on (application/wasm for streaming compilation).
//! Nothing outside the folder is reachable: paths are resolved and must stay inside it.
//!
//! Every request is bounded ([`Limits`]): the request line (414 past it), the header block (431),
//! the time to send the request and to take the answer (408 or a closed connection), and the number
//! of connections served at once (503 past it, answered without reading the request).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What one connection may cost the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes in the request line, its CRLF included.
    pub max_request_line: usize,
    /// Bytes in all header lines together, the blank line included.
    pub max_header_bytes: usize,
    /// Read and write timeout of the socket: a client that sends nothing (or reads nothing) for this
    /// long loses its connection.
    pub timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            timeout: Duration::from_secs(10),
            max_connections: 32,
        }
    }
}

pub fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file under `root` that `target` names, or `None` when it is outside `root` or missing.
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let mut rel = PathBuf::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if seg == "." || seg == ".." || seg.contains('\\') || seg.contains('%') {
            return None;
        }
        rel.push(seg);
    }
    let mut full = root.join(rel);
    if full.is_dir() {
        full.push("index.html");
    }
    let root = root.canonicalize().ok()?;
    let full = full.canonicalize().ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

/// What reading one line came to.
enum Line {
    Read,
    /// The client closed the connection inside the line: nobody is left to answer.
    Closed,
    /// Longer than the bound.
    TooLong,
    /// The read timed out.
    Late,
}

/// Reads one line (up to and with its `\n`) into `buf`, taking at most `max` bytes from the stream.
fn next_line(r: &mut impl BufRead, max: usize, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    match r.by_ref().take(max as u64).read_until(b'\n', buf) {
        Ok(_) if buf.last() == Some(&b'\n') => Ok(Line::Read),
        Ok(_) if buf.len() < max => Ok(Line::Closed),
        Ok(_) => Ok(Line::TooLong),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(Line::Late),
        Err(e) => Err(e),
    }
}

/// Writes one whole answer and closes the exchange (`Connection: close`); `body` is left out for
/// HEAD, its length still announced.
fn answer(s: &mut TcpStream, status: &str, ctype: &str, body: &[u8], head_only: bool) -> io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head_only {
        s.write_all(body)?;
    }
    s.flush()
}

/// A plain-text answer for a request that is refused before it is read whole.
fn refuse(s: &mut TcpStream, status: &str, why: &str) -> io::Result<()> {
    answer(s, status, "text/plain", why.as_bytes(), false)
}

fn respond(mut s: TcpStream, root: &Path, limits: &Limits) -> io::Result<()> {
    s.set_read_timeout(Some(limits.timeout))?;
    s.set_write_timeout(Some(limits.timeout))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = Vec::new();
    let timeout_ms = limits.timeout.as_millis();
    match next_line(&mut r, limits.max_request_line, &mut line)? {
        Line::Read => {}
        Line::Closed => return Ok(()),
        Line::TooLong => {
            let why = format!("request line longer than {} bytes\n", limits.max_request_line);
            return refuse(&mut s, "414 URI Too Long", &why);
        }
        Line::Late => {
            return refuse(
                &mut s,
                "408 Request Timeout",
                &format!("no request within {timeout_ms} ms\n"),
            );
        }
    }
    // The headers are read (so that the client sees an answer, not a reset) and ignored.
    let mut h = Vec::new();
    let mut left = limits.max_header_bytes;
    loop {
        match next_line(&mut r, left, &mut h)? {
            Line::Read => {}
            Line::Closed => return Ok(()),
            Line::TooLong => {
                let why = format!("headers longer than {} bytes\n", limits.max_header_bytes);
                return refuse(&mut s, "431 Request Header Fields Too Large", &why);
            }
            Line::Late => {
                let why = format!("headers not complete within {timeout_ms} ms\n");
                return refuse(&mut s, "408 Request Timeout", &why);
            }
        }
        left -= h.len();
        if h == b"\r\n" || h == b"\n" {
            break;
        }
    }
    let line = String::from_utf8_lossy(&line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (status, body, ctype) = if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", b"only GET and HEAD\n".to_vec(), "text/plain")
    } else {
        match resolve(root, target) {
            Some(p) => match std::fs::read(&p) {
                Ok(b) => ("200 OK", b, mime(&p)),
                Err(_) => ("500 Internal Server Error", b"read error\n".to_vec(), "text/plain"),
            },
            None => ("404 Not Found", b"not found\n".to_vec(), "text/plain"),
        }
    };
    answer(&mut s, status, ctype, &body, method == "HEAD")
}

/// Decrements the count of live connections when a connection's thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `root` on `listener` under `limits` until the process ends.
pub fn serve_on(listener: TcpListener, root: &Path, limits: Limits) -> io::Result<()> {
    let live = Arc::new(AtomicUsize::new(0));
    for mut stream in listener.incoming().flatten() {
        if live.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            live.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(limits.timeout));
            let why = format!("more than {} connections at once; try again\n", limits.max_connections);
            let _ = refuse(&mut stream, "503 Service Unavailable", &why);
            continue;
        }
        let slot = Slot(live.clone());
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            let _slot = slot;
            let _ = respond(stream, &root, &limits);
        });
    }
    Ok(())
}

/// Serves `root` on 127.0.0.1:`port` with the default [`Limits`] until the process ends.
pub fn serve(root: &Path, port: u16) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!(
        "serving {} on http://127.0.0.1:{}/",
        root.display(),
        listener.local_addr()?.port()
    );
    serve_on(listener, root, Limits::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A server on a free port over a folder holding index.html, with `limits`.
    fn start(limits: Limits) -> (u16, PathBuf) {
        let dir = std::env::temp_dir().join(format!("epsvae-serve-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = dir.clone();
        std::thread::spawn(move || serve_on(listener, &root, limits));
        (port, dir)
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    /// Sends `req` and returns the status line of the answer (empty when the server closed without one).
    fn ask(port: u16, req: &[u8]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(req);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn serves_a_file_and_refuses_long_request_lines_and_headers() {
        let (port, _dir) = start(Limits::default());
        assert_eq!(ask(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 200 OK");
        assert_eq!(ask(port, b"POST / HTTP/1.1\r\n\r\n"), "HTTP/1.1 405 Method Not Allowed");
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(ask(port, long.as_bytes()), "HTTP/1.1 414 URI Too Long");
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-Pad: 0123456789abcdef\r\n".repeat(1000));
        assert_eq!(
            ask(port, many.as_bytes()),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // One header line without an end, as long as the whole block may be.
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(20_000));
        assert_eq!(
            ask(port, endless.as_bytes()),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn a_silent_client_times_out_and_the_connection_count_is_bounded() {
        let limits = Limits {
            timeout: Duration::from_millis(400),
            max_connections: 2,
            ..Limits::default()
        };
        let (port, _dir) = start(limits);
        let t = Instant::now();
        assert_eq!(ask(port, b""), "HTTP/1.1 408 Request Timeout");
        let waited = t.elapsed();
        assert!(
            waited < Duration::from_secs(10),
            "the silent client was held {waited:?}"
        );
        // Two silent clients fill the server; a third is refused at once; once they time out, a
        // fourth is served again.
        let idle: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ask(port, b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 503 Service Unavailable");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(ask(port, b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK");
        drop(idle);
    }
}
