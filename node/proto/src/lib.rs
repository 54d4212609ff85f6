//! nearcast's protocol core: sans-IO state machines shared by the real node and the simulator.
//!
//! Nothing in this crate does I/O, reads a clock or uses a global random generator: every input
//! carries `now` (milliseconds on the driver's clock), and every effect is returned as an output
//! for the driver to carry out. See `docs/architecture.md`.

pub mod admission;
pub mod config;
pub mod content;
pub mod dht;
pub mod expiring;
pub mod fetch;
pub mod holders;
pub mod hot;
pub mod idmap;
pub mod key;
pub mod mapsync;
pub mod message;
pub mod node;
pub mod peer;
pub mod proximity;
pub mod rendezvous;
pub mod rng;
pub mod routing;
pub mod seeding;

pub use config::{Config, Strategy, Timing};
pub use content::{Manifest, ObjectId};
pub use fetch::{ChunkOutcome, FetchError, FetchId};
pub use mapsync::{MapRejected, MapSource};
pub use message::{AsMapRef, Request, Response, Role};
pub use node::{Node, Output, RequestError, RequestId, ServeDecision};
pub use peer::{Contact, PeerRef};
pub use proximity::{Locality, SourceClass};
