//! Chunk transfer over libp2p-stream (`/nearcast/chunk/1`): fetching one chunk from a peer and
//! verifying it before it is stored, and serving chunks from the store to others.
//!
//! Wire format: the requester writes a length-prefixed `ChunkRequest`; the server answers with a
//! length-prefixed `ChunkStatus` followed, for `Data { len }`, by exactly `len` raw bytes.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::PeerId;
use nearcast_proto::content::Manifest;
use nearcast_proto::message::{
    ChunkRequest, ChunkStatus, decode_chunk_request, encode_chunk_request,
};
use nearcast_proto::{ChunkOutcome, ObjectId, ServeDecision};
use nearcast_store::Store;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::codec::{read_frame, write_frame};
use crate::metrics::Metrics;
use crate::network::chunk_protocol;

/// Time allowed for one chunk, request to last byte.
pub const CHUNK_DEADLINE: Duration = Duration::from_secs(15);
/// Chunk uploads served at once.
const MAX_CONCURRENT_SERVES: usize = 64;
/// Chunk uploads served at once to one peer (two fetches' full window of 8): no peer can hold
/// every slot.
const MAX_SERVES_PER_PEER: usize = 16;
/// Time a requester has to send its request once it opened a stream.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Upload slots taken per peer (entries removed when a peer's last upload ends).
#[derive(Default)]
struct PeerSlots(std::sync::Mutex<std::collections::HashMap<PeerId, usize>>);

/// One upload slot of one peer, given back when dropped.
struct PeerSlot {
    slots: Arc<PeerSlots>,
    peer: PeerId,
}

impl PeerSlots {
    fn take(self: &Arc<Self>, peer: PeerId) -> Option<PeerSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(peer).or_insert(0);
        if *n >= MAX_SERVES_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<64>()
}

/// Fetches chunk `index` of `object` from `peer` (exactly the length `manifest` gives) and hands
/// it to the store, which verifies it against the manifest before writing it. `Err` is a local
/// failure (the store could not keep a verified chunk): no fault of the peer's.
pub async fn fetch_chunk(
    mut control: libp2p_stream::Control,
    store: Arc<Store>,
    peer: PeerId,
    object: ObjectId,
    manifest: Arc<Manifest>,
    index: u32,
) -> Result<ChunkOutcome, nearcast_store::StoreError> {
    let expected = manifest.chunk_len(index);
    let transfer = async {
        let mut stream = match control.open_stream(peer, chunk_protocol()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot open chunk stream");
                return None;
            }
        };
        write_frame(
            &mut stream,
            &encode_chunk_request(&ChunkRequest { object, index }),
        )
        .await
        .ok()?;
        let status = read_frame(&mut stream, 64).await.ok()?;
        let (status, _): (ChunkStatus, usize) =
            bincode::decode_from_slice(&status, config()).ok()?;
        let outcome = match status {
            ChunkStatus::NotHeld => return Some(Err(ChunkOutcome::NotHeld)),
            ChunkStatus::Busy => return Some(Err(ChunkOutcome::Busy)),
            ChunkStatus::Data { len } if len as usize != expected => {
                return Some(Err(ChunkOutcome::Corrupt));
            }
            ChunkStatus::Data { .. } => {
                let mut data = vec![0u8; expected];
                if let Err(e) = stream.read_exact(&mut data).await {
                    tracing::debug!(%peer, index, error = %e, "chunk transfer broke off");
                    return None;
                }
                let _ = stream.close().await;
                Ok(data)
            }
        };
        Some(outcome)
    };
    let data = match tokio::time::timeout(CHUNK_DEADLINE, transfer).await {
        Ok(Some(Ok(data))) => data,
        Ok(Some(Err(outcome))) => return Ok(outcome),
        Ok(None) => return Ok(ChunkOutcome::Failed),
        Err(_) => {
            tracing::debug!(%peer, index, "chunk transfer timed out");
            return Ok(ChunkOutcome::Failed);
        }
    };
    // The store verifies the chunk against the manifest (SHA-256) before anything is written:
    // hashing it here as well would cost a second pass over every byte received.
    let len = data.len() as u64;
    match tokio::task::spawn_blocking(move || store.put_chunk(&object, index, data)).await {
        Ok(Ok(())) => Ok(ChunkOutcome::Stored { bytes: len }),
        Ok(Err(e @ nearcast_store::StoreError::Rejected { .. })) => {
            tracing::warn!(%peer, %object, index, error = %e, "peer sent a bad chunk; discarded");
            Ok(ChunkOutcome::Corrupt)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(ChunkOutcome::Failed),
    }
}

/// Asks the protocol core whether to serve a chunk request.
pub struct AdmitQuery {
    pub from: PeerId,
    pub object: ObjectId,
    pub index: u32,
    pub reply: oneshot::Sender<ServeDecision>,
}

/// Accepts chunk streams and serves them from the store, as the core admits.
pub async fn serve_chunks(
    mut control: libp2p_stream::Control,
    store: Arc<Store>,
    admit: mpsc::Sender<AdmitQuery>,
    metrics: Arc<Metrics>,
    corrupt: bool,
) {
    let mut incoming = match control.accept(chunk_protocol()) {
        Ok(i) => i,
        Err(_) => {
            tracing::error!("chunk protocol already registered");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_SERVES));
    let per_peer = Arc::new(PeerSlots::default());
    while let Some((peer, mut stream)) = incoming.next().await {
        let taken = per_peer
            .take(peer)
            .and_then(|p| Some((p, slots.clone().try_acquire_owned().ok()?)));
        let Some(held) = taken else {
            // Over capacity, in all or for this peer: answer busy instead of queueing.
            tokio::spawn(async move {
                let busy = bincode::encode_to_vec(ChunkStatus::Busy, config()).unwrap_or_default();
                let _ =
                    tokio::time::timeout(REQUEST_DEADLINE, write_frame(&mut stream, &busy)).await;
            });
            continue;
        };
        let store = store.clone();
        let admit = admit.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _held = held;
            let work = async {
                // A requester that opens a stream and says nothing gives its slot back soon.
                let req = tokio::time::timeout(REQUEST_DEADLINE, read_frame(&mut stream, 128))
                    .await
                    .ok()?
                    .ok()?;
                let req = decode_chunk_request(&req).ok()?;
                let (tx, rx) = oneshot::channel();
                admit
                    .send(AdmitQuery {
                        from: peer,
                        object: req.object,
                        index: req.index,
                        reply: tx,
                    })
                    .await
                    .ok()?;
                let decision = rx.await.ok()?;
                let data = if decision == ServeDecision::Serve {
                    let s = store.clone();
                    let (object, index) = (req.object, req.index);
                    match tokio::task::spawn_blocking(move || s.chunk(&object, index)).await {
                        Ok(Ok(Some(d))) => Some(d),
                        _ => None,
                    }
                } else {
                    None
                };
                let status = match (&data, decision) {
                    (Some(d), _) => ChunkStatus::Data {
                        len: d.len() as u32,
                    },
                    (None, ServeDecision::Busy) => ChunkStatus::Busy,
                    (None, _) => ChunkStatus::NotHeld,
                };
                let status = bincode::encode_to_vec(status, config()).ok()?;
                write_frame(&mut stream, &status).await.ok()?;
                if let Some(mut d) = data {
                    if corrupt {
                        let mut bad = d.to_vec();
                        for b in bad.iter_mut().step_by(4096) {
                            *b ^= 0x5a;
                        }
                        d = bad.into();
                    }
                    stream.write_all(&d).await.ok()?;
                    stream.flush().await.ok()?;
                    metrics.served_bytes.inc_by(d.len() as u64);
                    metrics.chunks_served.inc();
                }
                let _ = stream.close().await;
                Some(())
            };
            let _ = tokio::time::timeout(CHUNK_DEADLINE, work).await;
        });
    }
}
