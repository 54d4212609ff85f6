//! Distribution of the proximity map through the overlay: which published map a node uses,
//! which seeder announcements it follows, and which map ids it has given up on.
//!
//! Seeders publish the map as an ordinary object and answer [`Request::GetAsMap`] with its id
//! and build time ([`AsMapRef`]). A node that follows published maps asks its configured seeders
//! every `asmap_check_ms`; an announcement counts only from a configured seeder (never from a
//! peer's own claim) and only if it is newer (larger build time) than the map in use and not an
//! id that already failed to decode. The driver then fetches the object through the ordinary
//! fetch path, decodes it and hands it back; the node installs it atomically (one `Arc` swap of
//! its [`crate::Locality`]) or records the failure.
//!
//! [`Request::GetAsMap`]: crate::message::Request::GetAsMap

use std::collections::BTreeSet;

use crate::content::ObjectId;
use crate::message::AsMapRef;

/// Media type of a published map object.
pub const MEDIA_TYPE: &str = "application/x-nearcast-asmap";

/// Most failed map ids remembered (oldest forgotten first).
const MAX_REJECTED: usize = 64;

/// Why a map was not installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapRejected {
    /// The node uses an explicit local map and ignores published ones.
    #[error("a local map is configured; published maps are ignored")]
    LocalMap,
    /// Its build time is not newer than the map in use.
    #[error("map built at {offered} is not newer than the map in use (built at {current})")]
    NotNewer { offered: u64, current: u64 },
    /// The id already failed once.
    #[error("map {0} was rejected before")]
    Rejected(ObjectId),
}

/// Where the node's proximity map comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapSource {
    /// No map: proximity by IP prefix alone.
    None,
    /// An explicit local file (wins over published maps).
    Local,
    /// A map published by the seeders.
    Published,
}

impl MapSource {
    pub fn label(self) -> &'static str {
        match self {
            MapSource::None => "none",
            MapSource::Local => "local",
            MapSource::Published => "published",
        }
    }
}

/// The map-distribution state of one node.
#[derive(Clone, Debug)]
pub struct MapSync {
    follow: bool,
    source: MapSource,
    /// The map announced to others: the published map in use, or a seeder's own local map.
    current: Option<AsMapRef>,
    /// The announcement being fetched by the driver.
    offered: Option<AsMapRef>,
    rejected: BTreeSet<ObjectId>,
    rejected_order: Vec<ObjectId>,
    pub(crate) next_check: u64,
}

impl MapSync {
    /// `follow`: whether to fetch maps the seeders announce.
    pub fn new(follow: bool) -> Self {
        MapSync {
            follow,
            source: MapSource::None,
            current: None,
            offered: None,
            rejected: BTreeSet::new(),
            rejected_order: Vec::new(),
            next_check: 0,
        }
    }

    pub fn follows(&self) -> bool {
        self.follow
    }

    pub fn source(&self) -> MapSource {
        self.source
    }

    /// The map this node announces (and, when following, uses).
    pub fn current(&self) -> Option<AsMapRef> {
        self.current
    }

    /// The announcement being fetched, if any.
    pub fn offered(&self) -> Option<AsMapRef> {
        self.offered
    }

    /// An explicit local map: published maps are ignored from now on; `publish` is the id under
    /// which this node (a seeder) publishes it, if any.
    pub fn set_local(&mut self, publish: Option<AsMapRef>) {
        self.follow = false;
        self.source = MapSource::Local;
        self.current = publish;
        self.offered = None;
    }

    /// A seeder announced `offer`: true if the driver should fetch it now.
    pub fn on_announce(&mut self, offer: AsMapRef) -> bool {
        if !self.follow || self.rejected.contains(&offer.object) {
            return false;
        }
        if self
            .current
            .is_some_and(|c| offer.built <= c.built || offer.object == c.object)
        {
            return false;
        }
        if self.offered.is_some_and(|o| o.built >= offer.built) {
            return false;
        }
        self.offered = Some(offer);
        true
    }

    /// May a decoded map with this id and build time replace the current one?
    pub fn check_install(&self, object: ObjectId, built: u64) -> Result<(), MapRejected> {
        if !self.follow {
            return Err(MapRejected::LocalMap);
        }
        if self.rejected.contains(&object) {
            return Err(MapRejected::Rejected(object));
        }
        match self.current {
            Some(c) if built <= c.built => Err(MapRejected::NotNewer {
                offered: built,
                current: c.built,
            }),
            _ => Ok(()),
        }
    }

    /// Records that `r` is now the map in use.
    pub fn installed(&mut self, r: AsMapRef) {
        self.source = MapSource::Published;
        self.current = Some(r);
        if self
            .offered
            .is_some_and(|o| o.object == r.object || o.built <= r.built)
        {
            self.offered = None;
        }
    }

    /// The fetch of `object` failed. `permanent` (it is not a valid map, or an older one): the
    /// id is never tried again; otherwise it may be offered again at the next check.
    pub fn failed(&mut self, object: ObjectId, permanent: bool) {
        if self.offered.is_some_and(|o| o.object == object) {
            self.offered = None;
        }
        if permanent && self.rejected.insert(object) {
            self.rejected_order.push(object);
            if self.rejected_order.len() > MAX_REJECTED {
                let old = self.rejected_order.remove(0);
                self.rejected.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(b: u8, built: u64) -> AsMapRef {
        AsMapRef {
            object: ObjectId([b; 32]),
            built,
        }
    }

    #[test]
    fn follows_only_newer_maps() {
        let mut s = MapSync::new(true);
        assert!(s.on_announce(r(1, 100)));
        // Already fetching something at least as new.
        assert!(!s.on_announce(r(2, 90)));
        assert!(!s.on_announce(r(1, 100)));
        assert!(s.check_install(ObjectId([1; 32]), 100).is_ok());
        s.installed(r(1, 100));
        assert_eq!(s.source(), MapSource::Published);
        assert_eq!(s.offered(), None);
        assert!(!s.on_announce(r(1, 100)), "the map in use");
        assert!(!s.on_announce(r(3, 100)), "same age, other id");
        assert!(!s.on_announce(r(4, 50)), "older");
        assert!(matches!(
            s.check_install(ObjectId([4; 32]), 50),
            Err(MapRejected::NotNewer { .. })
        ));
        assert!(s.on_announce(r(5, 200)));
    }

    #[test]
    fn failed_ids_are_not_retried_but_transient_failures_are() {
        let mut s = MapSync::new(true);
        assert!(s.on_announce(r(1, 100)));
        s.failed(ObjectId([1; 32]), false);
        assert!(s.on_announce(r(1, 100)), "a fetch failure may be retried");
        s.failed(ObjectId([1; 32]), true);
        assert!(
            !s.on_announce(r(1, 100)),
            "a bad map is never fetched again"
        );
        assert!(s.check_install(ObjectId([1; 32]), 100).is_err());
        for i in 0..(MAX_REJECTED as u8 + 1) {
            s.failed(ObjectId([i.wrapping_add(10); 32]), true);
        }
        assert!(s.rejected.len() <= MAX_REJECTED);
    }

    #[test]
    fn local_map_wins() {
        let mut s = MapSync::new(true);
        s.set_local(Some(r(9, 10)));
        assert_eq!(s.source(), MapSource::Local);
        assert_eq!(s.current(), Some(r(9, 10)));
        assert!(!s.on_announce(r(1, 1000)));
        assert_eq!(
            s.check_install(ObjectId([1; 32]), 1000),
            Err(MapRejected::LocalMap)
        );
    }
}
