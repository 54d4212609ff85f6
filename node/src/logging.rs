//! Log set-up for the daemons: `RUST_LOG` if set, else info for nearcast and warnings for the
//! libraries; always to stderr so stdout stays for the lines users and scripts read.

/// Installs the global tracing subscriber.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,nearcast=info,nearcast_seeder=info,nearcast_store=info",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in a log file or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
