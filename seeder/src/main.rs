//! `nearcast-seeder`: the origin daemon. `run` serves as an always-on supernode and origin;
//! `add` publishes files into its store (also while it runs); `asmap` builds and checks the
//! proximity map from routing data.

mod publish;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use nearcast::settings::{Reachability, Settings};
use nearcast_proto::Role;

#[derive(Parser)]
#[command(name = "nearcast-seeder", version, about = "nearcast origin seeder")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the origin daemon.
    Run {
        /// Data directory (store, identity).
        #[arg(long)]
        data: PathBuf,
        /// Listen address, e.g. /ip4/0.0.0.0/tcp/4000 (repeatable).
        #[arg(long, required = true)]
        listen: Vec<Multiaddr>,
        /// Other seeders, ending in /p2p/PEER_ID (repeatable).
        #[arg(long)]
        peer_seeder: Vec<Multiaddr>,
        /// Address for /status and /metrics.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// IP ranges to AS numbers: CSV rows first_ip,last_ip,asn[,org]. Used and published
        /// (in the binary map format) like --asmap.
        #[arg(long, conflicts_with = "asmap")]
        as_table: Option<PathBuf>,
        /// The proximity map (from `asmap build`): used, and published to the peers as an
        /// ordinary object.
        #[arg(long)]
        asmap: Option<PathBuf>,
        /// Without a map of its own: how often to ask the other seeders for theirs.
        #[arg(long, default_value = "10m", value_parser = nearcast::settings::parse_duration)]
        asmap_check: Duration,
        /// Upload to peers, bytes per second (e.g. 100MiB; default: no limit). Beyond it chunk
        /// requests are answered `Busy` and the peers come back a moment later.
        #[arg(long, value_parser = nearcast::settings::parse_size)]
        upload_limit: Option<u64>,
    },
    /// Publish files and directories (recursively); prints `ID  PATH` per file.
    Add {
        #[arg(long)]
        data: PathBuf,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Build or inspect a proximity map.
    Asmap {
        #[command(subcommand)]
        cmd: AsmapCmd,
    },
}

#[derive(Subcommand)]
enum AsmapCmd {
    /// Build a map from MRT RIB dumps, range CSVs and prefix tables.
    Build {
        #[arg(long, num_args = 1..)]
        mrt: Vec<PathBuf>,
        #[arg(long, num_args = 1..)]
        ranges: Vec<PathBuf>,
        #[arg(long, num_args = 1..)]
        prefixes: Vec<PathBuf>,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Print prefix and origin AS of each IP, and for two IPs their AS distance.
    Lookup {
        map: PathBuf,
        #[arg(required = true)]
        ips: Vec<IpAddr>,
    },
}

fn main() -> std::process::ExitCode {
    nearcast::logging::init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            data,
            listen,
            peer_seeder,
            http,
            as_table,
            asmap,
            asmap_check,
            upload_limit,
        } => {
            let settings = Settings {
                role: Role::Seeder,
                data,
                listen,
                bootstrap: peer_seeder,
                http,
                cache_size: None,
                as_table,
                asmap,
                asmap_check,
                promote_after: Duration::ZERO,
                reachable: Reachability::Yes,
                upload_limit: upload_limit.unwrap_or(u64::MAX),
                fault_corrupt_chunks: false,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(nearcast::daemon::run(settings)))
        }
        Cmd::Add { data, paths } => publish::add(&data, &paths),
        Cmd::Asmap {
            cmd:
                AsmapCmd::Build {
                    mrt,
                    ranges,
                    prefixes,
                    output,
                },
        } => {
            if mrt.is_empty() && ranges.is_empty() && prefixes.is_empty() {
                Err(anyhow::anyhow!(
                    "give at least one --mrt, --ranges or --prefixes file"
                ))
            } else {
                nearcast_asmap::build::build_cli(&mrt, &ranges, &prefixes, &output)
                    .map(|report| println!("{report}"))
                    .map_err(file_error)
            }
        }
        Cmd::Asmap {
            cmd: AsmapCmd::Lookup { map, ips },
        } => nearcast_asmap::lookup_cli(&map, &ips)
            .map(|text| print!("{text}"))
            .map_err(file_error),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A map file error as one line: its text already names the file and the cause, which
/// `{:#}` would otherwise print twice.
fn file_error(e: nearcast_asmap::FileError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
