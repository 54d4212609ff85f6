//! `nearcast`: the peer client. `run` starts the peer daemon; `get` and `status` talk to it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use nearcast::settings::{Reachability, Settings, parse_duration, parse_size};
use nearcast_proto::Role;

const DEFAULT_GATEWAY: &str = "127.0.0.1:7480";

#[derive(Parser)]
#[command(
    name = "nearcast",
    version,
    about = "nearcast peer: fetch and share content with nearby peers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the peer daemon.
    Run {
        /// Data directory (store, identity).
        #[arg(long)]
        data: PathBuf,
        /// Listen address, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable).
        #[arg(long, required = true)]
        listen: Vec<Multiaddr>,
        /// Seeder addresses ending in /p2p/PEER_ID (repeatable).
        #[arg(long, required = true, num_args = 1..)]
        bootstrap: Vec<Multiaddr>,
        /// Local HTTP gateway address.
        #[arg(long, default_value = DEFAULT_GATEWAY)]
        gateway: SocketAddr,
        /// Store budget, e.g. 2GiB; cold objects are evicted beyond it.
        #[arg(long, default_value = "2GiB", value_parser = parse_size)]
        cache_size: u64,
        /// IP ranges to AS numbers: CSV rows first_ip,last_ip,asn[,org].
        #[arg(long, conflicts_with = "asmap")]
        as_table: Option<PathBuf>,
        /// A binary proximity map (from `nearcast-seeder asmap build`). Either local map wins
        /// over the map the seeders publish; without one, the published map is used.
        #[arg(long)]
        asmap: Option<PathBuf>,
        /// How often to ask the seeders for a newer published map.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        asmap_check: std::time::Duration,
        /// Uptime before this peer may serve as a supernode.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        promote_after: std::time::Duration,
        /// Reachable from outside: auto (AutoNAT v2), yes or no.
        #[arg(long, value_enum, default_value = "auto")]
        reachable: Reachability,
        /// Upload offered to other peers, bytes per second (e.g. 20MiB).
        #[arg(long, default_value = "256MiB", value_parser = parse_size)]
        upload_limit: u64,
        /// Test only: corrupt every chunk served.
        #[arg(long, hide = true)]
        fault_corrupt_chunks: bool,
    },
    /// Fetch an object through the running daemon.
    Get {
        id: String,
        /// Write to FILE instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[arg(long, default_value = DEFAULT_GATEWAY)]
        gateway: SocketAddr,
    },
    /// Show the running daemon's status.
    Status {
        #[arg(long, default_value = DEFAULT_GATEWAY)]
        gateway: SocketAddr,
    },
}

fn main() -> std::process::ExitCode {
    nearcast::logging::init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Run {
                data,
                listen,
                bootstrap,
                gateway,
                cache_size,
                as_table,
                asmap,
                asmap_check,
                promote_after,
                reachable,
                upload_limit,
                fault_corrupt_chunks,
            } => {
                let settings = Settings {
                    role: Role::Leaf,
                    data,
                    listen,
                    bootstrap,
                    http: Some(gateway),
                    cache_size: Some(cache_size),
                    as_table,
                    asmap,
                    asmap_check,
                    promote_after,
                    reachable,
                    upload_limit,
                    fault_corrupt_chunks,
                };
                nearcast::daemon::run(settings).await
            }
            Cmd::Get {
                id,
                output,
                gateway,
            } => nearcast::client::get(gateway, &id, output.as_deref()).await,
            Cmd::Status { gateway } => {
                let s = nearcast::client::status(gateway).await?;
                println!("{s}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
