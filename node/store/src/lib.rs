//! nearcast's content store: verified objects on disk, shared by threads and processes.
//!
//! A [`Store`] keeps each object as plain files under one directory (see the `layout` module):
//! its manifest, one data file holding its 256 KiB chunks at their offsets, and an append-only
//! log of the chunks held. Manifests, pins and logs rewritten whole go through a temporary that
//! is renamed into place (fsynced first, except what a peer's cache fetched: see
//! [`StoreOptions::sync_fetched`]); a chunk counts as held only once its bytes are written and
//! its record appended to the log, so a kill at any moment leaves a consistent store; leftovers
//! are removed on open. Every manifest is checked against its id and every chunk against its
//! manifest, both when stored and when read: corrupted data is dropped and reported, never
//! returned.
//!
//! Peers give the store a size budget and it evicts least recently used objects beyond it;
//! seeders pin what they publish ([`Store::add_file`]), and pinned or protected objects are
//! never evicted. Plain files rather than a database let `nearcast-seeder add` publish into the
//! directory of a running seeder: a `Store` finds on disk the objects another process wrote.
//!
//! Modules: `layout` (paths), `atomic` (crash-safe writes), `held` (the log of held chunks),
//! `index` (in-memory index and LRU), `recent` (verified chunks kept in memory), `scan` (reading state back from disk), `store` (the API),
//! `publish` (adding files).

mod atomic;
mod error;
mod held;
mod index;
mod layout;
mod publish;
mod recent;
mod scan;
mod store;

pub use error::{CorruptPart, Result, StoreError};
pub use store::{ObjectInfo, Store, StoreOptions, StoreUsage};
