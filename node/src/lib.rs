//! The nearcast node runtime: drives the sans-IO protocol core (`nearcast-proto`) over libp2p
//! and tokio, with the on-disk store and the HTTP gateway. Shared by the `nearcast` peer client
//! and the `nearcast-seeder` origin daemon.

pub mod asmap;
pub mod chunks;
pub mod client;
pub mod codec;
pub mod daemon;
pub mod gateway;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod peer;
pub mod settings;
