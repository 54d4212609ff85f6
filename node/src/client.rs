//! The command-line client side: `nearcast get` and `nearcast status` talk to a running
//! daemon's gateway over plain HTTP/1.1 on loopback.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use nearcast_proto::ObjectId;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sends `GET path` and returns (status, headers, body reader).
async fn request(
    gateway: SocketAddr,
    path: &str,
) -> anyhow::Result<(u16, Vec<(String, String)>, BufReader<TcpStream>)> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(gateway))
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to the gateway at {gateway}"))?
        .with_context(|| {
            format!("cannot reach the nearcast daemon's gateway at {gateway} (is `nearcast run` running?)")
        })?;
    let mut stream = BufReader::new(stream);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n\r\n");
    stream.get_mut().write_all(req.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed HTTP status line {line:?}"))?;
    let mut headers = Vec::new();
    for _ in 0..100 {
        line.clear();
        if stream.read_line(&mut line).await? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok((status, headers, stream))
}

/// `nearcast get`: fetches an object through the daemon into `out` (or stdout).
///
/// A file is written beside its destination (`FILE.part`, created before the request, so that
/// an unwritable destination fails at once) and renamed there once whole: an interrupted
/// transfer (an error, Ctrl-C) never leaves a cut-short file under the name asked for, nor the
/// `.part` file. Anything but a regular file (a device, a pipe, a symlink) is written to
/// directly.
pub async fn get(gateway: SocketAddr, id: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let object: ObjectId = id
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("{id:?} is not an object id: {e}"))?;
    let partial = out.filter(|p| is_regular_or_absent(p)).map(partial_path);
    let direct = out.filter(|p| !is_regular_or_absent(p));
    let mut sink: Box<dyn Write> = match (partial.as_deref().or(direct), out) {
        (Some(p), Some(dest)) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", dest.display()))?,
        ),
        _ => Box::new(std::io::stdout().lock()),
    };
    let transfer = fetch_into(gateway, object, &mut sink, out.is_some());
    let result = tokio::select! {
        r = transfer => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    drop(sink);
    // `nearcast get ID | head` : the reader stopped wanting bytes, which is not an error.
    let result = match result {
        Err(e) if out.is_none() && is_broken_pipe(&e) => Ok(()),
        r => r,
    };
    let Some(tmp) = &partial else {
        return result;
    };
    let result = result.and_then(|()| {
        let dest = out.unwrap_or(tmp);
        std::fs::rename(tmp, dest)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Requests `object` and copies its body into `sink`, with a progress bar for a large object
/// going to a file.
async fn fetch_into(
    gateway: SocketAddr,
    object: ObjectId,
    sink: &mut dyn Write,
    to_file: bool,
) -> anyhow::Result<()> {
    let (status, headers, mut body) = request(gateway, &format!("/o/{object}")).await?;
    if status != 200 {
        let mut msg = String::new();
        let _ = body.read_to_string(&mut msg).await;
        bail!("{object}: {} ({status})", msg.trim());
    }
    let len: Option<u64> = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok());
    let bar = match len {
        Some(n) if n > 4 * 1024 * 1024 && to_file => {
            let b = indicatif::ProgressBar::new(n);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(b)
        }
        _ => None,
    };
    let copied = copy_body(&mut body, sink, bar.as_ref()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match (copied?, len) {
        (total, Some(n)) if total != n => {
            bail!(
                "{object}: the transfer ended after {total} of {n} bytes (the object was \
                 streamed while it arrived and its fetch failed part way, or the daemon \
                 stopped; the daemon's log says which)"
            )
        }
        _ => Ok(()),
    }
}

/// Whether writing to stdout failed because its reader went away.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether `path` is a regular file or does not exist yet (not a directory, device, pipe or
/// symlink).
fn is_regular_or_absent(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type().is_file(),
        Err(_) => true,
    }
}

/// `FILE.part` beside `FILE`.
fn partial_path(dest: &Path) -> std::path::PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Copies the response body into `sink`; returns the bytes copied.
async fn copy_body(
    body: &mut (impl AsyncRead + Unpin),
    sink: &mut dyn Write,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        sink.write_all(&buf[..n])?;
        total += n as u64;
        if let Some(b) = bar {
            b.set_position(total);
        }
    }
    sink.flush()?;
    Ok(total)
}

/// `nearcast status`: prints the daemon's status JSON.
pub async fn status(gateway: SocketAddr) -> anyhow::Result<String> {
    let (status, _, mut body) = request(gateway, "/status").await?;
    let mut s = String::new();
    body.read_to_string(&mut s).await?;
    if status != 200 {
        bail!("status request failed ({status}): {}", s.trim());
    }
    Ok(s)
}
