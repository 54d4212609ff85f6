//! The libp2p side of the node: identity, the data directory's lock, the check that a listen
//! port is free, transports (TCP+noise+yamux and QUIC), and the behaviours (control
//! request-response, chunk streams, identify, ping, AutoNAT v2, limits).
//!
//! No relay transport is built in, so content never crosses a relay.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, autonat, connection_limits, identify, noise, ping,
    request_response, tcp, yamux,
};
use nearcast_proto::message::{CHUNK_PROTOCOL, CONTROL_PROTOCOL};

use crate::codec::ControlCodec;

/// All behaviours of a nearcast node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub control: request_response::Behaviour<ControlCodec>,
    pub chunks: libp2p_stream::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub autonat_client: autonat::v2::client::Behaviour,
    pub autonat_server: autonat::v2::server::Behaviour,
    pub limits: connection_limits::Behaviour,
}

/// Protocol name of chunk streams.
pub fn chunk_protocol() -> StreamProtocol {
    StreamProtocol::new(CHUNK_PROTOCOL)
}

/// Loads the node's identity from `DIR/identity.key`, creating it (mode 0600) on first start.
pub fn load_identity(data: &Path) -> anyhow::Result<Keypair> {
    let path = data.join("identity.key");
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a valid identity key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("encoding new identity")?;
            let tmp = data.join("identity.key.tmp");
            // A leftover from an interrupted start would keep its mode when opened.
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", tmp.display())),
            }
            {
                use std::io::Write;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                // The private key: readable by its owner only.
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options
                    .open(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Locks `DIR/lock` for as long as the returned file is open: two daemons on one data directory
/// would share an identity and overwrite each other's store.
pub fn lock_data_dir(data: &Path) -> anyhow::Result<std::fs::File> {
    let path = data.join("lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another running daemon",
            data.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Fails if a fixed TCP port in `addr` is already bound. libp2p binds its TCP listeners with
/// `SO_REUSEPORT`, so a second daemon on a taken port would start and silently share the
/// incoming connections with the first; a plain bind refuses instead. (QUIC's UDP bind sets no
/// such option and fails by itself.) An IPv6 probe is IPv6-only, as libp2p's listeners are, so
/// that `/ip4/0.0.0.0/tcp/P` and `/ip6/::/tcp/P` together still work.
pub fn ensure_unused(addr: &Multiaddr) -> anyhow::Result<()> {
    let mut ip = None;
    for proto in addr.iter() {
        match proto {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(port) if port != 0 => {
                if let Some(ip) = ip
                    && let Err(e) = probe_tcp(std::net::SocketAddr::new(ip, port))
                    && e.kind() == std::io::ErrorKind::AddrInUse
                {
                    anyhow::bail!("cannot listen on {addr}: address already in use");
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Binds (and at once closes) a TCP socket on `at` without `SO_REUSEPORT`.
fn probe_tcp(at: std::net::SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(at), Type::STREAM, None)?;
    if at.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // As std's listeners: a port left in TIME_WAIT by an earlier run is free.
    socket.set_reuse_address(true)?;
    socket.bind(&at.into())?;
    socket.listen(1)
}

/// Builds the swarm.
pub fn build_swarm(key: Keypair, max_connections: u32) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("building the TCP transport")?
        .with_quic()
        .with_behaviour(|key| {
            let control = request_response::Behaviour::new(
                [(
                    StreamProtocol::new(CONTROL_PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(256),
            );
            let identify = identify::Behaviour::new(identify::Config::new(
                "/nearcast/id/1".into(),
                key.public(),
            ));
            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(max_connections))
                    .with_max_established_per_peer(Some(4))
                    .with_max_pending_incoming(Some(64)),
            );
            Ok(Behaviour {
                control,
                chunks: libp2p_stream::Behaviour::new(),
                identify,
                ping: ping::Behaviour::default(),
                autonat_client: autonat::v2::client::Behaviour::default(),
                autonat_server: autonat::v2::server::Behaviour::default(),
                limits,
            })
        })
        .map_err(|e| anyhow::anyhow!("building behaviours: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_and_only_its_owner_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_identity(dir.path()).expect("create");
        let again = load_identity(dir.path()).expect("load");
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("identity.key"))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
    }
}
