//! nearcast's content store: verified objects on disk, shared by threads and processes.
//!
//! A [`Store`] keeps object manifests and their 256 KiB chunks as plain files under one directory
//! (see the `layout` module). Every write goes through a temporary that is fsynced and renamed
//! into place, so a kill at any moment leaves a consistent store; leftovers are removed on open.
//! Every manifest is checked against its id and every chunk against its manifest, both when
//! stored and when read: corrupted files are removed and reported, never returned.
//!
//! Peers give the store a size budget and it evicts least recently used objects beyond it;
//! seeders pin what they publish ([`Store::add_file`]), and pinned or protected objects are
//! never evicted. Plain files rather than a database let `nearcast-seeder add` publish into the
//! directory of a running seeder: a `Store` finds on disk the objects another process wrote.
//!
//! Modules: `layout` (paths), `atomic` (crash-safe writes), `index` (in-memory index and LRU),
//! `scan` (reading state back from disk), `store` (the API), `publish` (adding files).

mod atomic;
mod error;
mod index;
mod layout;
mod publish;
mod scan;
mod store;

pub use error::{CorruptPart, Result, StoreError};
pub use store::{ObjectInfo, Store, StoreOptions, StoreUsage};
