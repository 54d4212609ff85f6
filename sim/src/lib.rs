//! nearcast-sim: the real nearcast protocol core (`nearcast-proto`), one state machine per
//! simulated peer, driven by a deterministic discrete-event loop over a simulated Internet.
//! See `docs/simulator.md`.

pub mod catalogue;
pub mod charts;
pub mod faults;
pub mod fxhash;
pub mod metrics;
pub mod net;
pub mod population;
pub mod queue;
pub mod realdata;
pub mod report;
pub mod run;
pub mod scenario;
pub mod transport;
pub mod world;
