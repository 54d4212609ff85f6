//! The runtime's side of proximity-map distribution: publishing a seeder's map into its store,
//! restoring the last good published map at start, and turning a fetched map object into an
//! installed map (decode, install in the core, pin, remember its id on disk). The decisions
//! (whose announcement counts, ordering, give-up on bad ids) are the core's (`mapsync`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nearcast_asmap::AsMap;
use nearcast_proto::mapsync::MEDIA_TYPE;
use nearcast_proto::{AsMapRef, FetchId, Node, ObjectId};
use nearcast_store::Store;

use crate::peer::NetPeer;

/// The file in the data directory naming the last good published map (its object id).
const ID_FILE: &str = "asmap.id";

/// The `asmap` part of `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AsMapStatus {
    /// `none`, `local` or `published`.
    pub source: String,
    /// The map object this node announces (published maps, and a seeder's own map).
    pub object: Option<String>,
    pub built: Option<u64>,
    pub prefixes: usize,
    pub ases: usize,
}

impl AsMapStatus {
    pub fn of(node: &Node<NetPeer>) -> AsMapStatus {
        let map = node.locality().map();
        let current = node.asmap().current();
        AsMapStatus {
            source: node.asmap().source().label().to_string(),
            object: current.map(|r| r.object.to_string()),
            built: current.map(|r| r.built),
            prefixes: map.prefix_count(),
            ases: map.as_count(),
        }
    }
}

/// Map fetches in flight and where the last good map's id is kept.
pub struct MapKeeper {
    id_file: PathBuf,
    fetches: HashMap<FetchId, AsMapRef>,
}

impl MapKeeper {
    pub fn new(data: &Path) -> MapKeeper {
        MapKeeper {
            id_file: data.join(ID_FILE),
            fetches: HashMap::new(),
        }
    }

    /// A seeder's own map: publish its bytes as a pinned object and announce that id.
    pub fn publish(&self, store: &Store, map: &AsMap) -> anyhow::Result<AsMapRef> {
        let object = store.add_bytes(&map.to_bytes(), MEDIA_TYPE)?;
        tracing::info!(%object, built = map.built(), "proximity map published");
        Ok(AsMapRef {
            object,
            built: map.built(),
        })
    }

    /// At start, without a local map: installs the last good published map, if any.
    pub fn restore(&self, store: &Store, node: &mut Node<NetPeer>) {
        let text = match std::fs::read_to_string(&self.id_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(
                    "no AS table given: proximity by IP prefix only until a seeder publishes a map"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(file = %self.id_file.display(), error = %e, "cannot read the map id; proximity by IP prefix only");
                return;
            }
        };
        let restored = text
            .trim()
            .parse::<ObjectId>()
            .map_err(|e| e.to_string())
            .and_then(|object| {
                let map = decode(store, &object)?;
                node.install_asmap(object, Arc::new(map))
                    .map_err(|e| e.to_string())
            });
        match restored {
            Ok(r) => {
                tracing::info!(object = %r.object, built = r.built, "last proximity map restored")
            }
            Err(e) => {
                tracing::warn!(file = %self.id_file.display(), error = %e, "cannot restore the last proximity map; proximity by IP prefix only until a seeder publishes one")
            }
        }
    }

    /// The core offered `map`: the driver started fetch `fetch` for it.
    pub fn fetching(&mut self, fetch: FetchId, map: AsMapRef) {
        tracing::info!(object = %map.object, built = map.built, "fetching the proximity map a seeder publishes");
        self.fetches.insert(fetch, map);
    }

    /// A fetch ended. If it was a map's: decode and install it (or record the failure).
    pub fn fetch_ended(
        &mut self,
        now: u64,
        fetch: FetchId,
        ok: bool,
        store: &Store,
        node: &mut Node<NetPeer>,
    ) {
        let Some(offered) = self.fetches.remove(&fetch) else {
            return;
        };
        let object = offered.object;
        if !ok {
            tracing::info!(%object, "proximity map fetch failed; will ask again");
            node.asmap_failed(now, object, false);
            return;
        }
        let previous = node.asmap().current();
        let map = match decode(store, &object) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%object, error = %e, "published proximity map rejected; keeping the map in use");
                node.asmap_failed(now, object, true);
                if !store.is_pinned(&object) {
                    let _ = store.remove(&object);
                    node.object_removed(object);
                }
                return;
            }
        };
        match node.install_asmap(object, Arc::new(map)) {
            Ok(r) => {
                let m = node.locality().map();
                tracing::info!(%object, built = r.built, prefixes = m.prefix_count(), ases = m.as_count(), "proximity map installed");
                self.keep(store, r, previous);
            }
            Err(e) => {
                tracing::warn!(%object, error = %e, "published proximity map not installed");
            }
        }
    }

    /// Pins the installed map, remembers its id (temporary file, fsync, rename), and unpins
    /// the one it replaced.
    fn keep(&self, store: &Store, r: AsMapRef, previous: Option<AsMapRef>) {
        if let Err(e) = store.pin(&r.object) {
            tracing::warn!(object = %r.object, error = %e, "cannot pin the proximity map");
        }
        let text = format!("{}\n", r.object);
        if let Err(e) = nearcast_asmap::write_map_file(&self.id_file, text.as_bytes()) {
            tracing::warn!(error = %e, "cannot record the proximity map id");
        }
        if let Some(p) = previous.filter(|p| p.object != r.object)
            && let Err(e) = store.unpin(&p.object)
        {
            tracing::debug!(object = %p.object, error = %e, "cannot unpin the previous map");
        }
    }
}

/// Reads a map object from the store (every chunk verified) and decodes it (checksum too).
fn decode(store: &Store, object: &ObjectId) -> Result<AsMap, String> {
    let bytes = store.read_object(object).map_err(|e| e.to_string())?;
    let map = AsMap::from_bytes(&bytes).map_err(|e| e.to_string())?;
    if map.prefix_count() == 0 {
        // It would turn proximity by AS off for every peer that follows the seeders.
        return Err("the map holds no IP ranges".into());
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::PeerId;
    use nearcast_proto::{Config, Contact, Locality, MapSource, Role};
    use std::net::{IpAddr, Ipv4Addr};

    const CSV: &str = "127.1.0.0,127.1.0.255,64501\n127.2.0.0,127.2.255.255,64502\n";

    fn node() -> Node<NetPeer> {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 1, 0, 9));
        let seeder = Contact::new(NetPeer(PeerId::random()), ip, 4000);
        let own = Contact::new(NetPeer(PeerId::random()), ip, 4001);
        let mut cfg = Config::new(own, Role::Leaf, vec![seeder], 1);
        cfg.follow_published_asmap = true;
        Node::new(cfg, Locality::new(Arc::new(AsMap::empty()), ip), 0)
    }

    fn map(built: u64) -> AsMap {
        AsMap::from_ranges_csv(CSV.as_bytes())
            .expect("table")
            .with_built(built)
    }

    /// `bytes`, offered as a map built at `built`, arrives as fetch `fid` (stored unpinned, as
    /// any fetched object) and the fetch ends well at `now`. Returns the offer.
    fn arrives(
        keeper: &mut MapKeeper,
        store: &Store,
        n: &mut Node<NetPeer>,
        bytes: &[u8],
        (built, fid, now): (u64, u64, u64),
    ) -> AsMapRef {
        let object = store.add_bytes(bytes, MEDIA_TYPE).expect("add");
        store.unpin(&object).expect("unpin");
        let offer = AsMapRef { object, built };
        keeper.fetching(FetchId(fid), offer);
        keeper.fetch_ended(now, FetchId(fid), true, store, n);
        offer
    }

    #[test]
    fn installs_keeps_restores_and_rejects_a_corrupt_or_empty_map() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store"), None).expect("store");
        let mut keeper = MapKeeper::new(dir.path());
        let mut n = node();

        // A good map arrives: installed, pinned, its id recorded.
        let offer = arrives(
            &mut keeper,
            &store,
            &mut n,
            &map(100).to_bytes(),
            (100, 1, 10),
        );
        let good = offer.object;
        assert_eq!(n.asmap().current(), Some(offer));
        assert_eq!(n.locality().own_asn(), Some(64501));
        assert!(store.is_pinned(&good));
        let recorded = std::fs::read_to_string(dir.path().join(ID_FILE)).expect("id file");
        assert_eq!(recorded.trim(), good.to_string());

        // A newer "map" that is not one (a flipped byte breaks its checksum): rejected, removed,
        // the old map kept and still recorded.
        let mut bytes = map(200).to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let bad = arrives(&mut keeper, &store, &mut n, &bytes, (200, 2, 20)).object;
        assert_eq!(n.asmap().current(), Some(offer), "old map kept");
        assert_eq!(n.locality().own_asn(), Some(64501));
        assert!(!store.contains(&bad), "the bad object is dropped");
        let recorded = std::fs::read_to_string(dir.path().join(ID_FILE)).expect("id file");
        assert_eq!(recorded.trim(), good.to_string());

        // A newer map without a single range (an empty table published by mistake): rejected
        // the same way, so proximity by AS is not switched off.
        let empty_map = AsMap::empty().with_built(300).to_bytes();
        let empty = arrives(&mut keeper, &store, &mut n, &empty_map, (300, 3, 30)).object;
        assert_eq!(n.asmap().current(), Some(offer), "old map kept");
        assert_eq!(n.locality().own_asn(), Some(64501));
        assert!(!store.contains(&empty), "the empty map is dropped");

        // After a restart the recorded map is back before anything else.
        let mut fresh = node();
        keeper.restore(&store, &mut fresh);
        assert_eq!(fresh.asmap().source(), MapSource::Published);
        assert_eq!(fresh.asmap().current(), Some(offer));
        assert_eq!(fresh.locality().map().prefix_count(), 2);
    }
}
