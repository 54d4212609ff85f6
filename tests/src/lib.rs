//! Test harness for nearcast: real `nearcast-seeder` and `nearcast` daemons as child processes on
//! loopback, with distinct 127.x.0.0/16 prefixes standing for three autonomous systems.
//!
//! Everything here is bounded in time: readiness waits, HTTP requests, process exits. Daemons are
//! killed when their [`Daemon`] is dropped; their stderr goes to a file in the harness's temporary
//! directory, whose tail [`run_test`] prints when a test fails.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use sha2::{Digest, Sha256};

/// How long a daemon may take to print its readiness lines.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunk size of the content model (for sizing multi-chunk objects).
pub const CHUNK: usize = 256 * 1024;

/// The three "ASes" of the loopback test networks.
pub const AS_A: u32 = 64501;
pub const AS_B: u32 = 64502;
pub const AS_C: u32 = 64503;

/// The AS table used by every test network: 127.1/16 → 64501, 127.2/16 → 64502,
/// 127.3/16 → 64503. Anything else (127.0.0.1, 127.9.x) is in no AS.
pub const AS_TABLE: &str = "127.1.0.0,127.1.255.255,64501,Test AS A\n\
127.2.0.0,127.2.255.255,64502,Test AS B\n\
127.3.0.0,127.3.255.255,64503,Test AS C\n";

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

/// Paths of the two daemons.
#[derive(Clone, Debug)]
pub struct Bins {
    pub nearcast: PathBuf,
    pub seeder: PathBuf,
}

/// The target directory that holds the running executable's sibling binaries: `target/<profile>`
/// for a binary, its parent for a test executable in `target/<profile>/deps`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("NEARCAST_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let mut dir = exe
        .parent()
        .context("running executable has no parent directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

impl Bins {
    /// Binaries in [`bin_dir`], or an error saying how to build them.
    pub fn locate() -> Result<Bins> {
        let dir = bin_dir()?;
        let bins = Bins::in_dir(&dir);
        for b in [&bins.nearcast, &bins.seeder] {
            ensure!(
                b.is_file(),
                "{} not found: build the daemons first with `cargo build --workspace` \
                 (the tests run the `nearcast` and `nearcast-seeder` binaries of the same \
                 target directory; or set NEARCAST_BIN_DIR)",
                b.display()
            );
        }
        Ok(bins)
    }

    pub fn in_dir(dir: &Path) -> Bins {
        Bins {
            nearcast: dir.join(format!("nearcast{}", std::env::consts::EXE_SUFFIX)),
            seeder: dir.join(format!("nearcast-seeder{}", std::env::consts::EXE_SUFFIX)),
        }
    }
}

/// For the demo and bench programs: builds the daemons next to the running binary (with cargo,
/// same profile and target directory) when they are missing, or always when this program was
/// started by `cargo run` (then the build is a no-op unless the sources changed, and the demo
/// never runs stale daemons).
pub fn ensure_daemons() -> Result<()> {
    let dir = bin_dir()?;
    let bins = Bins::in_dir(&dir);
    let missing = !bins.nearcast.is_file() || !bins.seeder.is_file();
    let under_cargo = std::env::var_os("CARGO").is_some();
    if !missing && !under_cargo {
        return Ok(());
    }
    let release = dir.file_name().is_some_and(|n| n == "release");
    let target_dir = dir.parent().context("binary directory has no parent")?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", "nearcast", "-p", "nearcast-seeder"]);
    if release {
        cmd.arg("--release");
    }
    println!(
        "{} the daemons first: cargo build{} -p nearcast -p nearcast-seeder",
        if missing { "building" } else { "checking" },
        if release { " --release" } else { "" }
    );
    let status = cmd
        .status()
        .context("cannot run cargo to build the daemons")?;
    if !status.success() {
        bail!("building the daemons failed ({status})");
    }
    Bins::locate().map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Running a test
// ---------------------------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test body with a fresh [`Harness`]: tests in one binary run one at a time (each
/// starts a network of processes), and when the body fails or panics the tails of every
/// daemon's log are printed before the test panics.
pub fn run_test(name: &str, body: impl FnOnce(&Harness) -> Result<()>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let harness = match Harness::new(name) {
        Ok(h) => h,
        Err(e) => panic!("{name}: cannot set up the harness: {e:#}"),
    };
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| body(&harness)));
    let secs = started.elapsed().as_secs_f64();
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(p) => Some(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        ),
    };
    match failure {
        None => eprintln!("{name}: passed in {secs:.1} s"),
        Some(msg) => {
            eprintln!("{name}: FAILED after {secs:.1} s\n");
            eprintln!("{}", harness.log_tails(60));
            if std::env::var_os("NEARCAST_KEEP_TMP").is_some() {
                let kept = harness.dir.path().to_path_buf();
                std::mem::forget(harness);
                eprintln!("kept test directory {}", kept.display());
            }
            panic!("{name} failed: {msg}");
        }
    }
}

/// Collects the outcome of several checks on one network, so that one failed property does not
/// hide the others; [`Checks::finish`] fails with all of them.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
    passed: usize,
}

impl Checks {
    pub fn new() -> Checks {
        Checks::default()
    }

    /// Records `cond`; `what` describes the property and the observed values.
    pub fn check(&mut self, cond: bool, what: impl AsRef<str>) {
        if cond {
            self.passed += 1;
            eprintln!("  ok   {}", what.as_ref());
        } else {
            eprintln!("  FAIL {}", what.as_ref());
            self.failures.push(what.as_ref().to_string());
        }
    }

    /// Records the outcome of a fallible step; returns its value when it succeeded.
    pub fn step<T>(&mut self, what: &str, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.passed += 1;
                eprintln!("  ok   {what}");
                Some(v)
            }
            Err(e) => {
                let msg = format!("{what}: {e:#}");
                eprintln!("  FAIL {msg}");
                self.failures.push(msg);
                None
            }
        }
    }

    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    pub fn finish(self) -> Result<()> {
        if self.failures.is_empty() {
            eprintln!("  {} checks passed", self.passed);
            Ok(())
        } else {
            bail!(
                "{} of {} checks failed:\n  - {}",
                self.failures.len(),
                self.failures.len() + self.passed,
                self.failures.join("\n  - ")
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A temporary directory, the AS table in it, and the log files of the daemons started from it.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub as_table: PathBuf,
    pub bins: Bins,
    logs: Mutex<Vec<(String, PathBuf)>>,
    /// Extra environment for every daemon.
    pub env: Vec<(String, String)>,
}

/// How to start a daemon.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    /// Listen IP (the daemon's "location"); the gateway/http listener uses it too.
    pub ip: IpAddr,
    pub as_table: bool,
    pub bootstrap: Vec<String>,
    /// Peers: `--cache-size`.
    pub cache_size: Option<String>,
    /// Peers: `--promote-after`.
    pub promote_after: Option<String>,
    /// Peers: `--reachable`.
    pub reachable: Option<String>,
    /// Any further arguments.
    pub extra: Vec<String>,
    /// Seeders: serve `--http`.
    pub http: bool,
}

impl Spec {
    pub fn new(name: &str, ip: &str) -> Spec {
        Spec {
            name: name.to_string(),
            ip: ip.parse().expect("test IPs are literals"),
            as_table: true,
            bootstrap: Vec::new(),
            cache_size: None,
            promote_after: None,
            reachable: None,
            extra: Vec::new(),
            http: true,
        }
    }

    pub fn bootstrap(mut self, addrs: &[String]) -> Spec {
        self.bootstrap = addrs.to_vec();
        self
    }

    pub fn arg(mut self, a: &str) -> Spec {
        self.extra.push(a.to_string());
        self
    }

    pub fn promote_after(mut self, d: &str) -> Spec {
        self.promote_after = Some(d.to_string());
        self
    }

    pub fn cache_size(mut self, s: &str) -> Spec {
        self.cache_size = Some(s.to_string());
        self
    }
}

impl Harness {
    pub fn new(name: &str) -> Result<Harness> {
        let bins = Bins::locate()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("nearcast-{name}-"))
            .tempdir()
            .context("cannot create a temporary directory")?;
        let as_table = dir.path().join("as-table.csv");
        fs::write(&as_table, AS_TABLE).context("cannot write the AS table")?;
        Ok(Harness {
            dir,
            as_table,
            bins,
            logs: Mutex::new(Vec::new()),
            env: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn register_log(&self, name: &str, path: &Path) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        if !logs.iter().any(|(_, p)| p == path) {
            logs.push((name.to_string(), path.to_path_buf()));
        }
    }

    /// The last `n` lines of every daemon log started from this harness.
    pub fn log_tails(&self, n: usize) -> String {
        let mut out = String::new();
        for (name, path) in self.logs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "----- {name}: last {n} lines of {} -----",
                path.display()
            );
            out.push_str(&tail_of_file(path, n));
            out.push('\n');
        }
        out
    }

    /// Starts a seeder with `--data <tmp>/<name>` listening on a free TCP port of `spec.ip`.
    pub fn seeder(&self, spec: Spec) -> Result<Daemon> {
        let data = self.path().join(&spec.name);
        let listen = format!("/ip4/{}/tcp/{}", spec.ip, free_port(spec.ip)?);
        let mut args: Vec<OsString> = vec![
            "run".into(),
            "--data".into(),
            data.clone().into(),
            "--listen".into(),
            listen.into(),
        ];
        if spec.http {
            args.push("--http".into());
            args.push(format!("{}:{}", spec.ip, free_port(spec.ip)?).into());
        }
        if spec.as_table {
            args.push("--as-table".into());
            args.push(self.as_table.clone().into());
        }
        args.extend(spec.extra.iter().map(OsString::from));
        self.start(Kind::Seeder, &spec.name, data, args)
    }

    /// Starts a peer with `--data <tmp>/<name>`, a free TCP port and a free gateway port on
    /// `spec.ip`.
    pub fn peer(&self, spec: Spec) -> Result<Daemon> {
        let data = self.path().join(&spec.name);
        let listen = format!("/ip4/{}/tcp/{}", spec.ip, free_port(spec.ip)?);
        let gateway = format!("{}:{}", spec.ip, free_port(spec.ip)?);
        let mut args: Vec<OsString> = vec![
            "run".into(),
            "--data".into(),
            data.clone().into(),
            "--listen".into(),
            listen.into(),
            "--gateway".into(),
            gateway.into(),
        ];
        if !spec.bootstrap.is_empty() {
            args.push("--bootstrap".into());
            args.extend(spec.bootstrap.iter().map(OsString::from));
        }
        if spec.as_table {
            args.push("--as-table".into());
            args.push(self.as_table.clone().into());
        }
        if let Some(s) = &spec.cache_size {
            args.push("--cache-size".into());
            args.push(s.into());
        }
        if let Some(s) = &spec.promote_after {
            args.push("--promote-after".into());
            args.push(s.into());
        }
        if let Some(s) = &spec.reachable {
            args.push("--reachable".into());
            args.push(s.into());
        }
        args.extend(spec.extra.iter().map(OsString::from));
        self.start(Kind::Peer, &spec.name, data, args)
    }

    /// Starts a daemon with explicit arguments and waits for its readiness lines.
    pub fn start(
        &self,
        kind: Kind,
        name: &str,
        data: PathBuf,
        args: Vec<OsString>,
    ) -> Result<Daemon> {
        let log = self.path().join(format!("{name}.log"));
        self.register_log(name, &log);
        let bin = match kind {
            Kind::Seeder => self.bins.seeder.clone(),
            Kind::Peer => self.bins.nearcast.clone(),
        };
        let mut d = Daemon {
            name: name.to_string(),
            kind,
            bin,
            args,
            env: self.env.clone(),
            data,
            log,
            child: None,
            lines: Arc::new(Mutex::new(Vec::new())),
            peer_id: String::new(),
            listen: Vec::new(),
            gateway: None,
            http: None,
            published: Mutex::new(Default::default()),
        };
        d.launch()?;
        Ok(d)
    }

    /// Publishes `paths` on the seeder's data directory with `nearcast-seeder add`; returns the
    /// id printed for each file, keyed by the path as printed.
    pub fn publish(&self, seeder: &Daemon, paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
        let mut args: Vec<OsString> =
            vec!["add".into(), "--data".into(), seeder.data.clone().into()];
        args.extend(paths.iter().map(|p| p.clone().into_os_string()));
        let out = run_cmd(&self.bins.seeder, &args, &[], Duration::from_secs(120))?;
        ensure!(
            out.status.success(),
            "nearcast-seeder add failed ({}): {}",
            out.status,
            out.stderr
        );
        let mut ids = Vec::new();
        for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let (id, path) = line.split_once("  ").with_context(|| {
                format!("`nearcast-seeder add` printed {line:?}, not `ID  PATH`")
            })?;
            ids.push((id.trim().to_string(), path.trim().to_string()));
        }
        // The running seeder picks up what `add` wrote to its store; wait until it counts it.
        let expected = {
            let mut p = seeder.published.lock().unwrap_or_else(|e| e.into_inner());
            p.extend(ids.iter().map(|(id, _)| id.clone()));
            p.len() as u64
        };
        if seeder.http.is_some() && seeder.child.is_some() {
            seeder
                .wait_status(
                    &format!("counting the {expected} published objects"),
                    Duration::from_secs(15),
                    |s| s.store_objects >= expected,
                )
                .context("the running seeder did not pick up `nearcast-seeder add`'s objects")?;
        }
        Ok(ids)
    }

    /// Writes `objects` under `<tmp>/<subdir>/`, publishes them all and returns their ids in
    /// the same order.
    pub fn publish_objects(
        &self,
        seeder: &Daemon,
        subdir: &str,
        objects: &[Object],
    ) -> Result<Vec<String>> {
        let dir = self.path().join(subdir);
        fs::create_dir_all(&dir)?;
        let mut paths = Vec::new();
        for o in objects {
            let p = dir.join(&o.name);
            fs::write(&p, &o.bytes).with_context(|| format!("writing {}", p.display()))?;
            paths.push(p);
        }
        let printed = self.publish(seeder, &paths)?;
        paths
            .iter()
            .map(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                printed
                    .iter()
                    .find(|(_, printed)| {
                        Path::new(printed).file_name().and_then(|n| n.to_str()) == Some(name)
                    })
                    .map(|(id, _)| id.clone())
                    .with_context(|| {
                        format!("`nearcast-seeder add` printed no id for {name}: {printed:?}")
                    })
            })
            .collect()
    }

    /// Runs `nearcast` with `args` (e.g. `get ID --gateway ...`), bounded by `timeout`.
    pub fn nearcast(&self, args: &[&str], timeout: Duration) -> Result<CmdOutput> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        run_cmd(&self.bins.nearcast, &args, &[], timeout)
    }
}

// ---------------------------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Seeder,
    Peer,
}

/// A running daemon (killed on drop).
pub struct Daemon {
    pub name: String,
    pub kind: Kind,
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    pub data: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    /// From `peer id: ...`.
    pub peer_id: String,
    /// From `listening: ...` (full multiaddrs with /p2p/).
    pub listen: Vec<String>,
    /// Peers: `IP:PORT` of the gateway.
    pub gateway: Option<String>,
    /// Seeders: `IP:PORT` of `--http`.
    pub http: Option<String>,
    /// Seeders: ids published through the harness.
    published: Mutex<std::collections::BTreeSet<String>>,
}

impl Daemon {
    fn launch(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("child has no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        self.child = Some(child);
        self.lines = lines;
        self.wait_ready(READY_TIMEOUT)
    }

    /// Waits until the daemon has printed its peer id, a listen address and (if it has one) its
    /// HTTP address.
    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let want_gateway = self.kind == Kind::Peer;
        let want_http = self.kind == Kind::Seeder && self.args.iter().any(|a| a == "--http");
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.stdout_lines();
            let mut peer_id = None;
            let mut listen = Vec::new();
            let mut gateway = None;
            let mut http = None;
            for l in &lines {
                let l = l.trim();
                if let Some(v) = l.strip_prefix("peer id:") {
                    peer_id = Some(v.trim().to_string());
                } else if let Some(v) = l.strip_prefix("listening:") {
                    listen.push(v.trim().to_string());
                } else if let Some(v) = l.strip_prefix("gateway:") {
                    gateway = Some(strip_http(v.trim()));
                } else if let Some(v) = l.strip_prefix("http:") {
                    http = Some(strip_http(v.trim()));
                }
            }
            let ready = peer_id.is_some()
                && !listen.is_empty()
                && (!want_gateway || gateway.is_some())
                && (!want_http || http.is_some());
            if ready {
                self.peer_id = peer_id.unwrap_or_default();
                self.listen = listen;
                self.gateway = gateway;
                self.http = http;
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready; stdout: {:?}\nstderr tail:\n{}",
                    self.name,
                    lines,
                    tail_of_file(&self.log, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} printed no readiness lines within {:?} (need `peer id:`, `listening:`{}); \
                     stdout so far: {:?}\nstderr tail:\n{}",
                    self.name,
                    timeout,
                    if want_gateway {
                        ", `gateway:`"
                    } else if want_http {
                        ", `http:`"
                    } else {
                        ""
                    },
                    lines,
                    tail_of_file(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Everything the daemon printed on stdout since it was (re)started.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("{} is not running", self.name),
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again with the same arguments (same data directory and addresses).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let _ = fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .and_then(|mut f| writeln!(f, "===== harness: restarting {} =====", self.name));
        // The port was just released; binding it again can briefly fail.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart of {} failed, retrying: {e:#}", self.name);
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// First listen address (with `/p2p/<id>`), for `--bootstrap`.
    pub fn addr(&self) -> String {
        self.listen.first().cloned().unwrap_or_default()
    }

    /// The HTTP endpoint: a peer's gateway or a seeder's `--http`.
    pub fn http_addr(&self) -> Result<&str> {
        self.gateway
            .as_deref()
            .or(self.http.as_deref())
            .with_context(|| format!("{} has no HTTP endpoint", self.name))
    }

    /// The data directory given as --data.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn http_get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Response> {
        http_get(self.http_addr()?, path, headers, timeout)
            .with_context(|| format!("GET {path} from {}", self.name))
    }

    /// `GET /o/{id}` through the gateway.
    pub fn get(&self, id: &str) -> Result<Response> {
        self.http_get(&format!("/o/{id}"), &[], HTTP_TIMEOUT)
    }

    /// Asks the first 100 bytes of `id` (`expected` its content), which this peer does not
    /// hold yet, with a `Range` request, and checks they came right and before the fetch was
    /// done: a fetch's bytes are counted when it is done, so none counted yet means the answer
    /// did not wait for the whole object. Returns how long the answer took.
    pub fn check_first_bytes_streamed(
        &self,
        c: &mut Checks,
        id: &str,
        expected: &[u8],
    ) -> Result<Duration> {
        let t = Instant::now();
        let r = self
            .http_get(
                &format!("/o/{id}"),
                &[("Range", "bytes=0-99")],
                Duration::from_secs(60),
            )
            .context("Range GET of the arriving object")?;
        let first = t.elapsed();
        let counted = self.metrics()?.by_source().total();
        c.check(
            r.status == 206 && expected.get(..100) == Some(&r.body[..]),
            format!("first 100 bytes → {} with {} bytes", r.status, r.body.len()),
        );
        c.check(
            counted == 0.0,
            format!(
                "... answered after {first:?}, before the fetch was done ({counted} bytes counted)"
            ),
        );
        Ok(first)
    }

    /// `GET /o/{id}`, which must answer 200 with exactly `expected`.
    pub fn fetch_ok(&self, id: &str, expected: &[u8]) -> Result<Duration> {
        let t = Instant::now();
        let r = self.get(id)?;
        ensure!(
            r.status == 200,
            "{}: GET /o/{id} answered {} {}",
            self.name,
            r.status,
            r.body_text(300)
        );
        ensure!(
            r.body.len() == expected.len() && sha256_hex(&r.body) == sha256_hex(expected),
            "{}: GET /o/{id} returned {} bytes with SHA-256 {}, expected {} bytes with {}",
            self.name,
            r.body.len(),
            sha256_hex(&r.body),
            expected.len(),
            sha256_hex(expected)
        );
        Ok(t.elapsed())
    }

    pub fn metrics(&self) -> Result<Metrics> {
        let r = self.http_get("/metrics", &[], Duration::from_secs(10))?;
        ensure!(
            r.status == 200,
            "{}: /metrics answered {}",
            self.name,
            r.status
        );
        Ok(Metrics::parse(&String::from_utf8_lossy(&r.body)))
    }

    pub fn status(&self) -> Result<Status> {
        let r = self.http_get("/status", &[], Duration::from_secs(10))?;
        ensure!(
            r.status == 200,
            "{}: /status answered {}",
            self.name,
            r.status
        );
        Status::parse(&r.body).with_context(|| format!("{}: /status", self.name))
    }

    /// Polls `/status` until `pred` holds, for at most `timeout`.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Result<Status> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status() {
                Ok(s) if pred(&s) => return Ok(s),
                Ok(s) => format!("{s:?}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{}: not {what} within {timeout:?}; last /status: {last}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the daemon has at least one parent (`/status`), at most `timeout`.
    pub fn wait_attached(&self, timeout: Duration) -> Result<Status> {
        self.wait_status("attached", timeout, |s| !s.parents.is_empty())
    }

    /// Bytes this daemon's log holds (all runs).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// RSS in KiB from /proc.
    pub fn rss_kib(&self) -> Result<u64> {
        proc_rss_kib(self.pid().context("not running")?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn strip_http(s: &str) -> String {
    s.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// A free TCP port on `ip` (bound and released; good enough on a quiet loopback).
pub fn free_port(ip: IpAddr) -> Result<u16> {
    let l = TcpListener::bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("cannot bind a port on {ip}"))?;
    Ok(l.local_addr()?.port())
}

/// The last `n` lines of a file.
pub fn tail_of_file(path: &Path, n: usize) -> String {
    let text = match fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// Output of a finished command.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs a command to completion, killing it after `timeout` (which is then an error).
pub fn run_cmd(
    bin: &Path,
    args: &[OsString],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<CmdOutput> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let mut out_pipe = child.stdout.take().context("no stdout")?;
    let mut err_pipe = child.stderr.take().context("no stderr")?;
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
            bail!(
                "`{} {}` did not finish within {timeout:?}; stderr: {stderr}",
                bin.display(),
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(CmdOutput {
        status,
        stdout,
        stderr,
        elapsed,
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Time from sending the request to the first byte of the response.
    pub ttfb: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, cut to `max` characters.
    pub fn body_text(&self, max: usize) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(max)
            .collect()
    }
}

/// A bounded HTTP/1.1 GET over a fresh connection (`Connection: close`).
pub fn http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req.push_str("\r\n");
    http_raw(addr, req.as_bytes(), timeout)
}

/// Sends `request` bytes as they are and parses the response, all within `timeout`.
pub fn http_raw(addr: &str, request: &[u8], timeout: Duration) -> Result<Response> {
    let deadline = Instant::now() + timeout;
    let sa: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("bad address {addr}"))?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout.min(Duration::from_secs(5)))
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(timeout))?;
    let sent = Instant::now();
    s.write_all(request)
        .with_context(|| format!("sending the request to {addr}"))?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut ttfb = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "no complete response from {addr} within {timeout:?} (got {} bytes)",
                buf.len()
            );
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if ttfb.is_none() {
                    ttfb = Some(sent.elapsed());
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(done) = response_complete(&buf) {
                    buf.truncate(done);
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                bail!(
                    "no complete response from {addr} within {timeout:?} (got {} bytes)",
                    buf.len()
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => break,
            Err(e) => return Err(e).with_context(|| format!("reading from {addr}")),
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    let mut r = parse_response(&buf).with_context(|| format!("response from {addr}"))?;
    r.ttfb = ttfb.unwrap_or_default();
    Ok(r)
}

/// Result of [`http_get_digest`].
#[derive(Debug, Clone)]
pub struct BodyDigest {
    pub status: u16,
    pub len: u64,
    pub sha256: String,
    pub ttfb: Duration,
    pub total: Duration,
}

/// A GET whose body is hashed as it streams in instead of being kept (for large objects).
/// Bodies without Content-Length are read whole through [`http_get`].
pub fn http_get_digest(addr: &str, path: &str, timeout: Duration) -> Result<BodyDigest> {
    let deadline = Instant::now() + timeout;
    let sa: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("bad address {addr}"))?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout.min(Duration::from_secs(5)))
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_nodelay(true)?;
    let sent = Instant::now();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut ttfb = None;
    let read = |s: &mut TcpStream, buf: &mut [u8]| -> Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "no complete response from {addr} within {timeout:?}"
        );
        s.set_read_timeout(Some(left))?;
        s.read(buf)
            .with_context(|| format!("reading from {addr} (timeout {timeout:?})"))
    };
    let head_end = loop {
        let n = read(&mut s, &mut buf)?;
        ensure!(n > 0, "connection closed before the response head");
        ttfb.get_or_insert_with(|| sent.elapsed());
        head.extend_from_slice(&buf[..n]);
        if let Some(e) = find_header_end(&head) {
            break e;
        }
        ensure!(head.len() < 1 << 20, "response head too large");
    };
    let (status, headers) = parse_head(&head[..head_end])?;
    let parsed = Response {
        status,
        headers,
        body: Vec::new(),
        ttfb: Duration::ZERO,
    };
    let Some(len) = parsed
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    else {
        drop(s);
        let r = http_get(addr, path, &[], timeout)?;
        return Ok(BodyDigest {
            status: r.status,
            len: r.body.len() as u64,
            sha256: sha256_hex(&r.body),
            ttfb: r.ttfb,
            total: sent.elapsed(),
        });
    };
    let mut h = Sha256::new();
    let first = &head[head_end..];
    let mut got = first.len() as u64;
    h.update(first);
    while got < len {
        let n = read(&mut s, &mut buf)?;
        ensure!(n > 0, "body truncated at {got} of {len} bytes");
        h.update(&buf[..n]);
        got += n as u64;
    }
    let sha = h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok(BodyDigest {
        status: parsed.status,
        len: got,
        sha256: sha,
        ttfb: ttfb.unwrap_or_default(),
        total: sent.elapsed(),
    })
}

/// A bounded HTTP/1.1 HEAD: the status and the time until the response head arrived. The
/// gateway answers an object's HEAD once the object is fetched, verified and stored.
pub fn http_head(addr: &str, path: &str, timeout: Duration) -> Result<(u16, Duration)> {
    let deadline = Instant::now() + timeout;
    let sa: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("bad address {addr}"))?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout.min(Duration::from_secs(5)))
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_nodelay(true)?;
    let sent = Instant::now();
    s.write_all(
        format!("HEAD {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "no response head from {addr} within {timeout:?}"
        );
        s.set_read_timeout(Some(left))?;
        let n = s
            .read(&mut buf)
            .with_context(|| format!("reading from {addr} (timeout {timeout:?})"))?;
        ensure!(n > 0, "connection closed before the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(e) = find_header_end(&head) {
            let (status, _) = parse_head(&head[..e])?;
            return Ok((status, sent.elapsed()));
        }
        ensure!(head.len() < 1 << 20, "response head too large");
    }
}

fn find_header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// If `buf` holds a complete response with a known length, its length.
fn response_complete(buf: &[u8]) -> Option<usize> {
    let head_end = find_header_end(buf)?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Some(head_end);
    }
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            let n: usize = v.trim().parse().ok()?;
            return (buf.len() >= head_end + n).then_some(head_end + n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return dechunk(&buf[head_end..])
                .ok()
                .flatten()
                .map(|(_, used)| head_end + used);
        }
    }
    None
}

/// Decodes a chunked body: `Ok(None)` while incomplete.
fn dechunk(mut b: &[u8]) -> Result<Option<(Vec<u8>, usize)>> {
    let total = b.len();
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            // Trailers end with an empty line.
            let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            if end == 0 {
                return Ok(Some((out, total - b.len() + 2)));
            }
            // Skip trailer lines.
            let Some(tr_end) = find_header_end(b) else {
                return Ok(None);
            };
            return Ok(Some((out, total - b.len() + tr_end)));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Status and lower-cased headers of a response head (ending with the empty line).
fn parse_head(buf: &[u8]) -> Result<(u16, Vec<(String, String)>)> {
    let head = std::str::from_utf8(buf).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("empty response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once(':')
            .with_context(|| format!("bad header line {l:?}"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((status, headers))
}

fn parse_response(buf: &[u8]) -> Result<Response> {
    let head_end = find_header_end(buf).with_context(|| {
        format!(
            "incomplete response head ({} bytes): {:?}",
            buf.len(),
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        )
    })?;
    let (status, headers) = parse_head(&buf[..head_end])?;
    let rest = &buf[head_end..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
            .map(|(b, _)| b)
            .context("truncated chunked body")?
    } else if let Some((_, v)) = headers.iter().find(|(k, _)| k == "content-length") {
        let n: usize = v
            .parse()
            .with_context(|| format!("bad Content-Length {v:?}"))?;
        ensure!(
            rest.len() >= n,
            "body truncated: {} of {n} bytes (Content-Length)",
            rest.len()
        );
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
        ttfb: Duration::ZERO,
    })
}

// ---------------------------------------------------------------------------------------------
// Metrics and status
// ---------------------------------------------------------------------------------------------

/// Samples of a Prometheus text exposition.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name_labels, value) = match line.rfind('}') {
                Some(close) => (&line[..=close], line[close + 1..].trim()),
                None => match line.split_once(char::is_whitespace) {
                    Some((n, v)) => (n, v.trim()),
                    None => continue,
                },
            };
            let value = value.split_whitespace().next().unwrap_or("");
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, l)) => (n.trim(), parse_labels(l.trim_end_matches('}'))),
                None => (name_labels.trim(), BTreeMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Metrics { samples }
    }

    /// Sum of `name` over samples whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// `nearcast_fetched_bytes_total{source}`.
    pub fn fetched(&self, source: &str) -> f64 {
        self.sum("nearcast_fetched_bytes_total", &[("source", source)])
    }

    /// Fetched bytes by every source.
    pub fn by_source(&self) -> Sources {
        Sources {
            local: self.fetched("local"),
            same_prefix: self.fetched("same_prefix"),
            same_as: self.fetched("same_as"),
            other_as: self.fetched("other_as"),
            seeder: self.fetched("seeder"),
        }
    }

    pub fn served(&self) -> f64 {
        self.sum("nearcast_served_bytes_total", &[])
    }

    pub fn rejected(&self) -> f64 {
        self.sum("nearcast_chunks_rejected_total", &[])
    }

    pub fn banned(&self) -> f64 {
        self.sum("nearcast_peers_banned_total", &[])
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(after) = after.strip_prefix('"') else {
            break;
        };
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            o => o,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                o => val.push(o),
            }
        }
        out.insert(key, val);
        rest = &after[end..];
    }
    out
}

/// Bytes by source class.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sources {
    pub local: f64,
    pub same_prefix: f64,
    pub same_as: f64,
    pub other_as: f64,
    pub seeder: f64,
}

impl Sources {
    /// Bytes from inside the requester's AS, itself excluded.
    pub fn own_as(&self) -> f64 {
        self.same_prefix + self.same_as
    }

    /// Bytes from the network (everything but the local store).
    pub fn remote(&self) -> f64 {
        self.same_prefix + self.same_as + self.other_as + self.seeder
    }

    pub fn total(&self) -> f64 {
        self.local + self.remote()
    }

    pub fn minus(&self, o: &Sources) -> Sources {
        Sources {
            local: self.local - o.local,
            same_prefix: self.same_prefix - o.same_prefix,
            same_as: self.same_as - o.same_as,
            other_as: self.other_as - o.other_as,
            seeder: self.seeder - o.seeder,
        }
    }

    pub fn plus(&self, o: &Sources) -> Sources {
        Sources {
            local: self.local + o.local,
            same_prefix: self.same_prefix + o.same_prefix,
            same_as: self.same_as + o.same_as,
            other_as: self.other_as + o.other_as,
            seeder: self.seeder + o.seeder,
        }
    }
}

impl std::fmt::Display for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "local={} same_prefix={} same_as={} other_as={} seeder={}",
            self.local, self.same_prefix, self.same_as, self.other_as, self.seeder
        )
    }
}

/// `GET /status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub peer_id: String,
    pub role: String,
    pub parents: Vec<String>,
    pub children: u64,
    pub peers: u64,
    pub store_bytes: u64,
    pub store_objects: u64,
    pub store_budget: Option<u64>,
    pub raw: serde_json::Value,
}

impl Status {
    pub fn parse(body: &[u8]) -> Result<Status> {
        let v: serde_json::Value = serde_json::from_slice(body).with_context(|| {
            format!(
                "not JSON: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        })?;
        let str_field = |k: &str| -> Result<String> {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_string)
                .with_context(|| format!("missing string field {k:?} in {v}"))
        };
        let num = |x: Option<&serde_json::Value>, k: &str| -> Result<u64> {
            x.and_then(|x| x.as_u64())
                .with_context(|| format!("missing number field {k:?} in {v}"))
        };
        let store = v.get("store");
        Ok(Status {
            peer_id: str_field("peer_id")?,
            role: str_field("role")?,
            parents: v
                .get("parents")
                .and_then(|p| p.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            children: num(v.get("children"), "children")?,
            peers: num(v.get("peers"), "peers")?,
            store_bytes: num(store.and_then(|s| s.get("bytes")), "store.bytes")?,
            store_objects: num(store.and_then(|s| s.get("objects")), "store.objects")?,
            store_budget: store.and_then(|s| s.get("budget")).and_then(|b| b.as_u64()),
            raw: v,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------------------------

/// A deterministic pseudo-random generator: the protocol core's SplitMix64, with helpers for
/// generating test content.
#[derive(Clone, Debug)]
pub struct Rng(nearcast_proto::rng::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(nearcast_proto::rng::Rng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// A generated object to publish.
#[derive(Clone, Debug)]
pub struct Object {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Object {
    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

/// Random bytes of `size`, deterministic in `seed`, starting with a JPEG header.
pub fn image(name: &str, seed: u64, size: usize) -> Object {
    let mut bytes = vec![0u8; size];
    Rng::new(seed).fill(&mut bytes);
    let magic = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0];
    let n = magic.len().min(size);
    bytes[..n].copy_from_slice(&magic[..n]);
    Object {
        name: name.to_string(),
        bytes,
    }
}

/// A text post of `size` bytes (0.3–5 KiB in practice), deterministic in `seed`.
pub fn post(name: &str, seed: u64, size: usize) -> Object {
    const WORDS: &[&str] = &[
        "nearcast",
        "peer",
        "seeder",
        "image",
        "post",
        "cache",
        "the",
        "a",
        "of",
        "popular",
        "tail",
        "byte",
        "chunk",
        "verified",
        "supernode",
        "leaf",
        "prefix",
        "network",
        "today",
        "photo",
        "friends",
        "share",
        "lovely",
        "weather",
        "coffee",
        "morning",
    ];
    let mut rng = Rng::new(seed);
    let mut s = String::with_capacity(size + 16);
    while s.len() < size {
        s.push_str(WORDS[rng.range(0, WORDS.len() as u64 - 1) as usize]);
        s.push(if rng.range(0, 11) == 0 { '\n' } else { ' ' });
    }
    s.truncate(size);
    Object {
        name: name.to_string(),
        bytes: s.into_bytes(),
    }
}

/// A random post of 0.3–5 KiB.
pub fn random_post(name: &str, rng: &mut Rng) -> Object {
    let size = rng.range(300, 5 * 1024) as usize;
    post(name, rng.next_u64(), size)
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A well-formed object id that names nothing (base58 of 32 random bytes).
pub fn unknown_id(seed: u64) -> String {
    let mut b = [0u8; 32];
    Rng::new(seed).fill(&mut b);
    bs58::encode(b).into_string()
}

/// Finds the directory named `id` under `root` (the store's object directory), if any.
pub fn find_object_dir(root: &Path, id: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            seen += 1;
            if seen > 200_000 {
                return None;
            }
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_str() == Some(id) {
                    return Some(p);
                }
                stack.push(p);
            }
        }
    }
    None
}

/// Reads the data file of an object directory (the object's bytes, chunk i at i * chunk size;
/// chunks not held are holes that read as zeros).
pub fn read_stored_data(object_dir: &Path) -> Result<Vec<u8>> {
    let path = object_dir.join("data");
    fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Rewrites the `held` log of an object directory without its records for chunk `index`, as
/// if that chunk had never been stored. Records are 8 bytes: the chunk index (u32
/// little-endian), then a check.
pub fn forget_stored_chunk(object_dir: &Path, index: u32) -> Result<()> {
    let path = object_dir.join("held");
    let log = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let kept: Vec<u8> = log
        .chunks(8)
        .filter(|r| r.len() == 8 && r[..4] != index.to_le_bytes())
        .flatten()
        .copied()
        .collect();
    fs::write(&path, kept).with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------------------

/// VmRSS of a process in KiB.
pub fn proc_rss_kib(pid: u32) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")
}

/// utime + stime of a process, in clock ticks.
pub fn proc_cpu_ticks(pid: u32) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &s[s.rfind(')').context("malformed /proc stat")? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' : state(3) ppid(4) ... utime is field 14, stime 15 (1-based over the whole line)
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).context("no utime")?;
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).context("no stime")?;
    Ok(utime + stime)
}

/// Clock ticks per second (USER_HZ; 100 on Linux).
pub fn clock_ticks_per_s() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(anyhow!("{what}: not within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_and_sum() {
        let m = Metrics::parse(
            "# HELP x\n# TYPE nearcast_fetched_bytes_total counter\n\
             nearcast_fetched_bytes_total{source=\"local\"} 10\n\
             nearcast_fetched_bytes_total{source=\"seeder\",x=\"a,b\"} 5\n\
             nearcast_served_bytes_total 7\n# EOF\n",
        );
        assert_eq!(m.fetched("local"), 10.0);
        assert_eq!(m.fetched("seeder"), 5.0);
        assert_eq!(m.served(), 7.0);
        assert_eq!(m.sum("nearcast_fetched_bytes_total", &[]), 15.0);
        assert_eq!(m.rejected(), 0.0);
    }

    #[test]
    fn responses_parse() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"x\"\r\n\r\nabc")
            .expect("parses");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abc");
        assert_eq!(r.header("etag"), Some("\"x\""));
        let c = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(response_complete(c), Some(c.len()));
        assert_eq!(parse_response(c).expect("parses").body, b"abcde");
    }

    #[test]
    fn content_is_deterministic() {
        assert_eq!(image("a", 1, 5000).bytes, image("a", 1, 5000).bytes);
        let p = post("p", 3, 700);
        assert_eq!(p.bytes.len(), 700);
        assert!(unknown_id(1).len() >= 43);
    }
}
