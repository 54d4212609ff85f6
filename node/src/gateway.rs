//! The local HTTP gateway: `GET /o/{id}` (the object, verified, with caching headers and Range
//! support), `GET /status` (JSON) and `GET /metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nearcast_proto::ObjectId;
use nearcast_store::Store;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// How long a gateway request waits for a fetch at most. The core ends a fetch that makes no
/// progress for 20 s (`Timing::stall_ms`), so a fetch that keeps going is waited for: a large
/// object on a slow link is not cut off. This only bounds a daemon that never answers.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Requests from the gateway to the daemon's event loop.
pub enum Command {
    /// The stored copy turned out damaged on read: forget it so the next fetch refetches.
    Forget { object: ObjectId },
    Fetch {
        object: ObjectId,
        reply: oneshot::Sender<FetchReport>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    /// A response body waits for chunk `index` of `object`, which a fetch is bringing: fetch it
    /// (and the next few) first.
    ReaderWaits { object: ObjectId, index: u32 },
}

/// Outcome of a fetch, for the gateway.
#[derive(Clone, Debug)]
pub enum FetchReport {
    Done { bytes: [u64; 5] },
    Failed(nearcast_proto::FetchError),
}

/// The `/status` document.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StatusReport {
    pub peer_id: String,
    pub role: String,
    pub parents: Vec<String>,
    pub children: usize,
    pub peers: usize,
    pub known_supernodes: usize,
    pub routing_table: usize,
    pub store_bytes: u64,
    pub store_objects: usize,
    pub store_budget: Option<u64>,
    /// The proximity map in use.
    pub asmap: crate::asmap::AsMapStatus,
}

/// Shared by the handlers.
#[derive(Clone)]
pub struct GatewayState {
    pub commands: mpsc::Sender<Command>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

/// Serves the gateway until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: GatewayState) {
    let app = Router::new()
        .route("/o/{id}", get(get_object))
        .route("/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

/// A plain-text answer. Never cached: an error may be temporary (a seeder down) even when it
/// is a 404, which caches would otherwise keep by default.
fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut body = msg.into();
    body.push('\n');
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn get_status(State(st): State<GatewayState>) -> Response {
    let (tx, rx) = oneshot::channel();
    if st
        .commands
        .send(Command::Status { reply: tx })
        .await
        .is_err()
    {
        return text(StatusCode::SERVICE_UNAVAILABLE, "daemon stopping");
    }
    match rx.await {
        Ok(s) => {
            let v = serde_json::json!({
                "peer_id": s.peer_id,
                "role": s.role,
                "parents": s.parents,
                "children": s.children,
                "peers": s.peers,
                "known_supernodes": s.known_supernodes,
                "routing_table": s.routing_table,
                "store": {"bytes": s.store_bytes, "objects": s.store_objects, "budget": s.store_budget},
                "asmap": s.asmap,
            });
            ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
        }
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "daemon stopping"),
    }
}

async fn get_metrics(State(st): State<GatewayState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// Parses a `Range` header against `size` (RFC 9110 §14.2): `Ok(None)` when there is none or
/// it is to be ignored (another unit, several ranges, bad syntax: the whole object is sent),
/// `Err` when a valid single byte range is not satisfiable (416).
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    // Digits only; a number past u64 is as good as u64::MAX (a last position past the end is
    // clipped, a first position past it is not satisfiable).
    let number = |t: &str| -> Option<u64> {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(t.parse().unwrap_or(u64::MAX))
    };
    let (start, end) = if a.is_empty() {
        let Some(n) = number(b) else {
            return Ok(None);
        };
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let Some(s) = number(a) else {
            return Ok(None);
        };
        let e = if b.is_empty() {
            u64::MAX
        } else {
            match number(b) {
                Some(e) if e >= s => e,
                _ => return Ok(None),
            }
        };
        (s, e.min(size.saturating_sub(1)))
    };
    if size == 0 || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Whether `If-None-Match` names this object's entity tag (its id, which never changes).
fn not_modified(headers: &HeaderMap, object: &ObjectId) -> bool {
    let tag = format!("\"{object}\"");
    if_none_match_tags(headers).any(|t| t.trim_start_matches("W/") == tag)
}

/// Whether `If-None-Match` is `*`: not modified if the object exists at all (RFC 9110 §13.1.2),
/// which is known only once it is found.
fn not_modified_if_exists(headers: &HeaderMap) -> bool {
    if_none_match_tags(headers).any(|t| t == "*")
}

fn if_none_match_tags(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether a `Range` is to be honoured: without `If-Range`, or when `If-Range` is this object's
/// strong entity tag (RFC 9110 §13.1.5). A date or another tag means "send it all": this
/// gateway gives no `Last-Modified`, so no date can match.
fn range_applies(headers: &HeaderMap, object: &ObjectId) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => v
            .to_str()
            .is_ok_and(|v| v.trim() == format!("\"{object}\"")),
    }
}

/// `304 Not Modified` with the object's tag and caching headers.
fn not_modified_response(object: &ObjectId) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    if let Ok(v) = HeaderValue::from_str(&format!("\"{object}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp
}

async fn get_object(
    State(st): State<GatewayState>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let object: ObjectId = match id.parse() {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad object id: {e}")),
    };
    if not_modified(&headers, &object) {
        // The id is the hash of the content: a cached copy under this tag is current.
        return not_modified_response(&object);
    }
    let protected = Protected::new(st.store.clone(), object);
    // A GET of an object of several chunks starts as soon as its manifest is here; a HEAD
    // answers once the object is stored and verified (`nearcast-bench` and scripts use it so).
    let (manifest, source) = match fetch_verified(&st, object, method != Method::HEAD).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if not_modified_if_exists(&headers) {
        return not_modified_response(&object);
    }
    let size = manifest.size;
    let range = if range_applies(&headers, &object) {
        parse_range(&headers, size)
    } else {
        Ok(None)
    };
    let (status, start, end) = match range {
        Ok(None) => (StatusCode::OK, 0, size.saturating_sub(1)),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let body = match source {
        Source::Whole(data) => {
            let piece = data
                .get(start as usize..(start + len) as usize)
                .unwrap_or_default();
            Body::from(Bytes::copy_from_slice(piece))
        }
        Source::Stored => stream_body(
            protected,
            st.commands.clone(),
            object,
            manifest.chunk_size,
            start..=end,
            None,
        ),
        Source::Arriving(fetch) => stream_body(
            protected,
            st.commands.clone(),
            object,
            manifest.chunk_size,
            start..=end,
            Some(fetch),
        ),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let media = HeaderValue::from_str(&manifest.media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, media);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{object}\"")) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// Keeps an object from eviction while a request fetches and sends it (counted with the
/// daemon's own protection of objects in flight).
struct Protected {
    store: Arc<Store>,
    object: ObjectId,
}

impl Protected {
    fn new(store: Arc<Store>, object: ObjectId) -> Self {
        store.protect(&object);
        Protected { store, object }
    }
}

impl Drop for Protected {
    fn drop(&mut self) {
        unprotect_in_background(self.store.clone(), self.object);
    }
}

/// Ends one protection of `object` on a blocking thread: the eviction it may set off (renames,
/// fsyncs, deletions) must not hold up the event loop or an HTTP worker.
pub fn unprotect_in_background(store: Arc<Store>, object: ObjectId) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(move || store.unprotect(&object));
        }
        Err(_) => store.unprotect(&object),
    }
}

/// Objects up to this size are read (and so verified) whole before the response starts, so a
/// copy damaged on disk is refetched instead of breaking off mid-response.
const WHOLE_READ_MAX: u64 = 16 * 1024 * 1024;

/// Where a response's bytes come from.
enum Source {
    /// An object already stored (or a one-chunk object just fetched) of up to
    /// [`WHOLE_READ_MAX`], read (and so verified) whole.
    Whole(Vec<u8>),
    /// A large object, stored whole: streamed chunk by chunk, each read verified.
    Stored,
    /// An object of more than one chunk still being fetched: streamed chunk by chunk as the
    /// chunks are stored (each verified when it arrived and again when it is read).
    Arriving(oneshot::Receiver<FetchReport>),
}

/// How often a GET waiting for a large object's manifest, or a stream waiting for its next
/// chunk, looks at the store again.
const ARRIVAL_POLL: Duration = Duration::from_millis(20);
/// How often a stream still waiting for a chunk tells the daemon so.
const READER_HINT_EVERY: Duration = Duration::from_millis(250);

/// Fetches `object` (or finds it stored) and, for small objects, reads it verified. With
/// `early`, an object of more than one chunk that has to be fetched is answered as soon as its
/// manifest is stored, its chunks streamed as they arrive: an image or a clip shows its first
/// bytes after one chunk, not after all of them.
async fn fetch_verified(
    st: &GatewayState,
    object: ObjectId,
    early: bool,
) -> Result<(nearcast_proto::Manifest, Source), Response> {
    for _attempt in 0..2 {
        let (tx, mut rx) = oneshot::channel();
        if st
            .commands
            .send(Command::Fetch { object, reply: tx })
            .await
            .is_err()
        {
            return Err(text(StatusCode::SERVICE_UNAVAILABLE, "daemon stopping"));
        }
        let report = if early {
            match wait_for_manifest(st, object, &mut rx).await {
                Arrival::Report(report) => report,
                Arrival::Manifest(m) => return Ok((m, Source::Arriving(rx))),
            }
        } else {
            tokio::time::timeout(FETCH_TIMEOUT, rx).await.ok()
        };
        match report {
            Some(Ok(FetchReport::Done { .. })) => {}
            Some(Ok(FetchReport::Failed(error))) => return Err(fetch_failed(object, &error)),
            Some(Err(_)) => return Err(text(StatusCode::SERVICE_UNAVAILABLE, "daemon stopping")),
            None => {
                return Err(text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "object {object}: no complete copy within {}s",
                        FETCH_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        let store = st.store.clone();
        let manifest = match tokio::task::spawn_blocking(move || store.manifest(&object)).await {
            Ok(Ok(Some(m))) => m,
            _ => {
                let _ = st.commands.send(Command::Forget { object }).await;
                continue;
            }
        };
        if manifest.size > WHOLE_READ_MAX {
            // Streamed piece by piece: at least every chunk must still be held (a chunk found
            // damaged earlier was dropped from the store, and the copy is fetched again).
            let store = st.store.clone();
            let complete = tokio::task::spawn_blocking(move || store.is_complete(&object))
                .await
                .unwrap_or(false);
            if complete {
                return Ok((manifest, Source::Stored));
            }
            let _ = st.commands.send(Command::Forget { object }).await;
            continue;
        }
        let store = st.store.clone();
        match tokio::task::spawn_blocking(move || store.read_object(&object)).await {
            Ok(Ok(data)) => return Ok((manifest, Source::Whole(data))),
            Ok(Err(e)) => {
                tracing::warn!(%object, error = %e, "stored copy is damaged; fetching it again");
                let _ = st.commands.send(Command::Forget { object }).await;
            }
            Err(_) => return Err(text(StatusCode::INTERNAL_SERVER_ERROR, "read task failed")),
        }
    }
    Err(text(
        StatusCode::BAD_GATEWAY,
        format!("object {object}: the stored copy was damaged and could not be fetched again"),
    ))
}

/// The answer to a failed fetch.
fn fetch_failed(object: ObjectId, error: &nearcast_proto::FetchError) -> Response {
    use nearcast_proto::FetchError;
    match error {
        FetchError::Local(_) => text(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("object {object}: {error}"),
        ),
        FetchError::Stalled(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!("object {object}: {error}"),
        ),
        FetchError::NoSource => text(
            StatusCode::NOT_FOUND,
            format!("object {object} not found: {error}"),
        ),
        FetchError::SeedersUnreachable => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("object {object} unavailable for now: {error}"),
        ),
    }
}

/// What came first while a fetch ran.
enum Arrival {
    /// The fetch's report (`None`: none within [`FETCH_TIMEOUT`]), before the manifest of an
    /// object of more than one chunk was stored.
    Report(Option<Result<FetchReport, oneshot::error::RecvError>>),
    /// The manifest of an object of more than one chunk, stored while the fetch goes on.
    Manifest(nearcast_proto::Manifest),
}

/// Waits for the fetch's report, or for `object`'s manifest if the object has more than one
/// chunk. (An object already stored is reported done at once.)
async fn wait_for_manifest(
    st: &GatewayState,
    object: ObjectId,
    rx: &mut oneshot::Receiver<FetchReport>,
) -> Arrival {
    let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
    loop {
        tokio::select! {
            report = &mut *rx => return Arrival::Report(Some(report)),
            _ = tokio::time::sleep_until(deadline) => return Arrival::Report(None),
            _ = tokio::time::sleep(ARRIVAL_POLL) => {}
        }
        // A copy already complete waits for the report instead: it is read whole first (a
        // damaged chunk is then fetched again before the answer starts, not mid-response).
        let store = st.store.clone();
        let arriving = tokio::task::spawn_blocking(move || match store.manifest(&object) {
            Ok(Some(m)) if m.size > u64::from(m.chunk_size) && !store.is_complete(&object) => {
                Some(m)
            }
            _ => None,
        });
        if let Ok(Some(m)) = arriving.await {
            return Arrival::Manifest(m);
        }
    }
}

/// Streams a large object in pieces of at most one chunk, each read verified from the store.
/// With `fetch` (the object still arriving), a piece is sent once its chunk is stored, and the
/// body ends early if the fetch fails. The object stays protected from eviction until the body
/// is sent or dropped. A piece that cannot be read ends the body early (the client sees a short
/// response) and makes the daemon forget its copy, so that the next request fetches it again
/// instead of failing the same way.
fn stream_body(
    protected: Protected,
    commands: mpsc::Sender<Command>,
    object: ObjectId,
    chunk_size: u32,
    range: std::ops::RangeInclusive<u64>,
    fetch: Option<oneshot::Receiver<FetchReport>>,
) -> Body {
    let piece = u64::from(chunk_size);
    let (start, end) = (*range.start(), *range.end());
    let stream = futures::stream::unfold((start, fetch), move |(pos, mut fetch)| {
        let store = protected.store.clone();
        let commands = commands.clone();
        async move {
            if pos > end {
                return None;
            }
            let index = (pos / piece) as u32;
            if let Err(e) = wait_for_chunk(&store, &commands, object, index, &mut fetch).await {
                return Some((Err(e), (u64::MAX, None)));
            }
            let n = (piece - pos % piece).min(end + 1 - pos);
            let r = tokio::task::spawn_blocking(move || store.read_range(&object, pos, n)).await;
            let item = match r {
                Ok(Ok(data)) => Ok(Bytes::from(data)),
                Ok(Err(e)) => {
                    tracing::warn!(%object, error = %e, "stored copy is damaged; forgetting it");
                    let _ = commands.send(Command::Forget { object }).await;
                    Err(std::io::Error::other(e.to_string()))
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let next = if item.is_ok() { pos + n } else { u64::MAX };
            Some((item, (next, fetch)))
        }
    });
    Body::from_stream(stream)
}

/// Waits until chunk `index` of `object` is stored, while `fetch` (if any) brings it. Once the
/// fetch has ended well every chunk is stored; if it failed, so does the wait.
async fn wait_for_chunk(
    store: &Arc<Store>,
    commands: &mpsc::Sender<Command>,
    object: ObjectId,
    index: u32,
    fetch: &mut Option<oneshot::Receiver<FetchReport>>,
) -> std::io::Result<()> {
    let mut told: Option<tokio::time::Instant> = None;
    while let Some(rx) = fetch {
        let s = store.clone();
        if tokio::task::spawn_blocking(move || s.has_chunk(&object, index))
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        // Said again while the wait lasts: a full queue may have lost it, or another reader of
        // the object may have moved the fetch's attention elsewhere since.
        if told.is_none_or(|at| at.elapsed() >= READER_HINT_EVERY) {
            let _ = commands.try_send(Command::ReaderWaits { object, index });
            told = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            report = &mut *rx => {
                *fetch = None;
                match report {
                    Ok(FetchReport::Done { .. }) => {}
                    Ok(FetchReport::Failed(e)) => {
                        return Err(std::io::Error::other(format!("object {object}: {e}")));
                    }
                    Err(_) => return Err(std::io::Error::other("daemon stopping")),
                }
            }
            _ = tokio::time::sleep(ARRIVAL_POLL) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header value"));
        h
    }

    #[test]
    fn single_byte_ranges_are_served_and_the_rest_ignored_or_refused() {
        let range = |v: &str| parse_range(&with(header::RANGE, v), 100);
        assert_eq!(parse_range(&HeaderMap::new(), 100), Ok(None));
        assert_eq!(range("bytes=0-9"), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-"), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10"), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-1000"), Ok(Some((0, 99))));
        assert_eq!(range("bytes=50-1000"), Ok(Some((50, 99))));
        // Not satisfiable: 416.
        assert_eq!(range("bytes=100-"), Err(()));
        assert_eq!(range("bytes=-0"), Err(()));
        // Another unit, several ranges, bad syntax: ignored, the whole object is sent.
        for ignored in [
            "items=0-4",
            "bytes=0-1,3-4",
            "bytes=abc",
            "bytes=+2-4",
            "bytes=5-3",
            "bytes=1-+4",
            "bytes=",
            "bytes=-",
        ] {
            assert_eq!(range(ignored), Ok(None), "{ignored}");
        }
        assert_eq!(parse_range(&with(header::RANGE, "bytes=0-"), 0), Err(()));
        // Positions past u64: a last position is clipped, a first one is past the end.
        assert_eq!(range("bytes=0-99999999999999999999999"), Ok(Some((0, 99))));
        assert_eq!(range("bytes=99999999999999999999999-"), Err(()));
        assert_eq!(range("bytes=-99999999999999999999999"), Ok(Some((0, 99))));
    }

    #[test]
    fn if_range_honours_the_range_only_for_this_objects_strong_tag() {
        let id = ObjectId([3u8; 32]);
        let tag = format!("\"{id}\"");
        assert!(range_applies(&HeaderMap::new(), &id));
        assert!(range_applies(&with(header::IF_RANGE, &tag), &id));
        for other in [
            "\"nope\"".to_string(),
            format!("W/{tag}"),
            "Sat, 05 Dec 2026 10:00:00 GMT".to_string(),
        ] {
            assert!(
                !range_applies(&with(header::IF_RANGE, &other), &id),
                "{other}"
            );
        }
    }

    #[test]
    fn if_none_match_matches_only_this_objects_tag() {
        let id = ObjectId([3u8; 32]);
        let tag = format!("\"{id}\"");
        let matches = |v: &str| not_modified(&with(header::IF_NONE_MATCH, v), &id);
        assert!(matches(&tag));
        assert!(matches(&format!("W/{tag}")));
        assert!(matches(&format!("\"other\", {tag}")));
        assert!(!matches("\"other\""));
        assert!(!matches(&id.to_string()));
        assert!(!not_modified(&HeaderMap::new(), &id));
        // `*` matches any object that exists, decided once it is found.
        assert!(!matches("*"));
        assert!(not_modified_if_exists(&with(header::IF_NONE_MATCH, "*")));
        assert!(!not_modified_if_exists(&with(header::IF_NONE_MATCH, &tag)));
    }
}
