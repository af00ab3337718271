//! A small static file server for the page (`epsvae serve`): GET and HEAD of files under one
//! folder, with the MIME types browsers insist on (application/wasm for streaming compilation).
//! Nothing outside the folder is reachable: paths are resolved and must stay inside it.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

pub fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
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

fn respond(mut s: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut line = String::new();
    let mut r = BufReader::new(s.try_clone()?);
    r.read_line(&mut line)?;
    // Drain the headers.
    let mut h = String::new();
    while r.read_line(&mut h)? > 2 {
        h.clear();
    }
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
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        s.write_all(&body)?;
    }
    s.flush()
}

/// Serves `root` on 127.0.0.1:`port` until the process ends.
pub fn serve(root: &Path, port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!(
        "serving {} on http://127.0.0.1:{}/",
        root.display(),
        listener.local_addr()?.port()
    );
    for stream in listener.incoming().flatten() {
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            let _ = respond(stream, &root);
        });
    }
    Ok(())
}
