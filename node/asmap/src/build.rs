//! Building a map from files (feature `build`): MRT RIB dumps through bgpkit-parser, range CSVs
//! and pyasn prefix tables, each plain, gzip or bzip2 (detected by magic bytes), with a
//! [`BuildReport`] of what was read and skipped, and the seeder's `asmap build` entry point.
//!
//! MRT rules (TABLE_DUMP_V2 RIB records, IPv4 and IPv6):
//! - The origin of a RIB entry is the last AS of its AS path. An entry whose path ends in an
//!   AS_SET (an aggregate) or a confederation segment gives no origin and is counted as skipped;
//!   so is an origin that is a reserved or private AS (0, 23456, 64496–131071,
//!   4200000000–4294967295).
//! - A prefix takes the origin most of its entries agree on (ties: the lowest AS number);
//!   prefixes with several origins are counted. The default route (/0) is skipped.
//! - Adjacency: consecutive distinct ASes inside AS_SEQUENCE segments, so prepending collapses.
//!   An AS_SET or confederation segment breaks the chain (no edge across it), and so does a
//!   reserved or private AS (no edge to or across it).
//! - A truncated dump (plain or compressed) yields every complete record before the cut; the cut
//!   is reported in [`SourceReport::truncated`], never as a panic or a lost map.
//!
//! Precedence: where two sources map the same prefix differently, the source added first wins.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bgpkit_parser::models::{AsPathSegment, MrtMessage, RibAfiEntries, TableDumpV2Message};
use bgpkit_parser::{BgpkitParser, ParserError};

use crate::fs::{FileError, write_map_file};
use crate::{AsMap, AsMapBuilder, TableStats};

/// Kind of an input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// MRT RIB dump.
    Mrt,
    /// Range CSV (`first_ip,last_ip,asn[,org]`).
    Ranges,
    /// Prefix table (`prefix<TAB>asn`).
    Prefixes,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Mrt => "mrt",
            SourceKind::Ranges => "ranges",
            SourceKind::Prefixes => "prefixes",
        })
    }
}

/// One input, for [`build_sources`], which keeps the order sources were named in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// MRT RIB dump.
    Mrt(PathBuf),
    /// Range CSV.
    Ranges(PathBuf),
    /// Prefix table.
    Prefixes(PathBuf),
}

/// What one input file gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceReport {
    /// Kind of input.
    pub kind: SourceKind,
    /// File (or name given to a reader).
    pub path: PathBuf,
    /// "plain", "gzip" or "bzip2".
    pub compression: &'static str,
    /// MRT records or text lines read.
    pub records: u64,
    /// RIB entries (one per peer and prefix) read; 0 for text tables.
    pub entries: u64,
    /// Prefixes contributed (before cross-source duplicates are removed).
    pub prefixes: u64,
    /// Records, entries or lines not used, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Why and where the input was cut short, if it was.
    pub truncated: Option<String>,
    /// Time spent reading this source.
    pub elapsed: Duration,
}

impl SourceReport {
    fn new(kind: SourceKind, path: &Path, compression: &'static str) -> Self {
        SourceReport {
            kind,
            path: path.to_path_buf(),
            compression,
            records: 0,
            entries: 0,
            prefixes: 0,
            skipped: BTreeMap::new(),
            truncated: None,
            elapsed: Duration::ZERO,
        }
    }

    fn skip(&mut self, reason: &str) {
        self.skip_n(reason, 1);
    }

    fn skip_n(&mut self, reason: &str, n: u64) {
        if let Some(c) = self.skipped.get_mut(reason) {
            *c += n;
        } else {
            self.skipped.insert(reason.to_string(), n);
        }
    }

    fn absorb_table(&mut self, stats: TableStats) {
        self.records = stats.lines;
        self.prefixes = stats.prefixes;
        for (reason, n) in stats.skipped {
            self.skip_n(reason, n);
        }
        self.truncated = stats.truncated;
    }
}

/// What a build read, skipped and produced. `Display` gives the text the CLI prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// Per input, in the order added.
    pub sources: Vec<SourceReport>,
    /// IPv4 prefixes in the map.
    pub prefixes_v4: usize,
    /// IPv6 prefixes in the map.
    pub prefixes_v6: usize,
    /// ASes in the map.
    pub ases: usize,
    /// AS adjacencies in the map.
    pub edges: usize,
    /// Prefixes given again by a later source with the same AS.
    pub duplicate_prefixes: u64,
    /// Prefixes given again by a later source with another AS (the earlier source kept).
    pub conflicting_prefixes: u64,
    /// Total build time (set by [`MapBuilder::finish`], and again by [`build_sources`] to
    /// include encoding and writing).
    pub elapsed: Duration,
    /// Size of the written map file, when one was written.
    pub file_bytes: Option<u64>,
    /// Where the map was written, when it was.
    pub output: Option<PathBuf>,
}

impl BuildReport {
    /// MRT records plus text lines read, over all sources.
    pub fn records_read(&self) -> u64 {
        self.sources.iter().map(|s| s.records).sum()
    }

    /// Skip counts by reason, over all sources.
    pub fn skipped(&self) -> BTreeMap<String, u64> {
        let mut total: BTreeMap<String, u64> = BTreeMap::new();
        for s in &self.sources {
            for (reason, n) in &s.skipped {
                *total.entry(reason.clone()).or_default() += n;
            }
        }
        total
    }

    /// Inputs that were cut short, with the reason.
    pub fn truncations(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.sources
            .iter()
            .filter_map(|s| Some((s.path.as_path(), s.truncated.as_deref()?)))
    }

    /// Number of warnings: truncated inputs.
    pub fn warnings(&self) -> usize {
        self.truncations().count()
    }
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sources {
            write!(
                f,
                "{} {} ({}): {} records",
                s.kind,
                s.path.display(),
                s.compression,
                s.records
            )?;
            if s.kind == SourceKind::Mrt {
                write!(f, ", {} RIB entries", s.entries)?;
            }
            writeln!(
                f,
                ", {} prefixes, {:.2} s",
                s.prefixes,
                s.elapsed.as_secs_f64()
            )?;
            for (reason, n) in &s.skipped {
                writeln!(f, "  skipped {n}: {reason}")?;
            }
            if let Some(t) = &s.truncated {
                writeln!(f, "  WARNING truncated: {t}")?;
            }
        }
        writeln!(
            f,
            "map: {} prefixes ({} IPv4, {} IPv6), {} ASes, {} AS edges",
            self.prefixes_v4 + self.prefixes_v6,
            self.prefixes_v4,
            self.prefixes_v6,
            self.ases,
            self.edges
        )?;
        writeln!(
            f,
            "merge: {} duplicate prefixes, {} conflicting prefixes (first source kept)",
            self.duplicate_prefixes, self.conflicting_prefixes
        )?;
        if let Some(out) = &self.output {
            writeln!(
                f,
                "wrote {} ({} bytes) in {:.2} s",
                out.display(),
                self.file_bytes.unwrap_or(0),
                self.elapsed.as_secs_f64()
            )?;
        }
        let warnings = self.warnings();
        if warnings > 0 {
            writeln!(f, "{warnings} warning(s): input truncated (see above)")?;
        }
        Ok(())
    }
}

/// Builds a map from files; see the module doc for the rules.
#[derive(Debug, Default)]
pub struct MapBuilder {
    inner: AsMapBuilder,
    sources: Vec<SourceReport>,
    started: Option<Instant>,
}

impl MapBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self) -> Instant {
        let now = Instant::now();
        self.started.get_or_insert(now);
        now
    }

    fn push(&mut self, mut report: SourceReport, started: Instant) -> &SourceReport {
        report.elapsed = started.elapsed();
        self.sources.push(report);
        let i = self.sources.len() - 1;
        &self.sources[i]
    }

    /// Adds one input of the given kind.
    pub fn add(&mut self, source: &Source) -> Result<&SourceReport, FileError> {
        match source {
            Source::Mrt(p) => self.add_mrt(p),
            Source::Ranges(p) => self.add_ranges(p),
            Source::Prefixes(p) => self.add_prefix_table(p),
        }
    }

    /// Adds an MRT RIB dump (TABLE_DUMP_V2; plain, gzip or bzip2). Only a failure to open the
    /// file is an error; damage inside it is reported in the returned [`SourceReport`].
    pub fn add_mrt(&mut self, path: &Path) -> Result<&SourceReport, FileError> {
        let started = self.start();
        let (reader, compression) = open_input(path)?;
        let mut report = SourceReport::new(SourceKind::Mrt, path, compression);
        read_mrt(&mut self.inner, reader, &mut report);
        Ok(self.push(report, started))
    }

    /// Adds an MRT RIB dump from any reader (already decompressed). `name` labels the report.
    pub fn add_mrt_reader(&mut self, name: &Path, reader: impl Read) -> &SourceReport {
        let started = self.start();
        let mut report = SourceReport::new(SourceKind::Mrt, name, "plain");
        read_mrt(&mut self.inner, reader, &mut report);
        self.push(report, started)
    }

    /// Adds a range CSV (plain, gzip or bzip2). Malformed lines are skipped and counted.
    pub fn add_ranges(&mut self, path: &Path) -> Result<&SourceReport, FileError> {
        let started = self.start();
        let (reader, compression) = open_input(path)?;
        let mut report = SourceReport::new(SourceKind::Ranges, path, compression);
        let stats = self
            .inner
            .add_ranges_csv(BufReader::with_capacity(1 << 16, reader), false)
            .map_err(|source| FileError::Map {
                path: path.to_path_buf(),
                source,
            })?;
        report.absorb_table(stats);
        Ok(self.push(report, started))
    }

    /// Adds a pyasn prefix table (plain, gzip or bzip2). Malformed lines are skipped and counted.
    pub fn add_prefix_table(&mut self, path: &Path) -> Result<&SourceReport, FileError> {
        let started = self.start();
        let (reader, compression) = open_input(path)?;
        let mut report = SourceReport::new(SourceKind::Prefixes, path, compression);
        let stats = self
            .inner
            .add_prefix_table(BufReader::with_capacity(1 << 16, reader), false)
            .map_err(|source| FileError::Map {
                path: path.to_path_buf(),
                source,
            })?;
        report.absorb_table(stats);
        Ok(self.push(report, started))
    }

    /// Freezes the map and completes the report.
    pub fn finish(self) -> (AsMap, BuildReport) {
        let started = self.started.unwrap_or_else(Instant::now);
        let (map, merge) = self.inner.finish();
        let report = BuildReport {
            sources: self.sources,
            prefixes_v4: map.prefix_count_v4(),
            prefixes_v6: map.prefix_count_v6(),
            ases: map.as_count(),
            edges: map.edge_count(),
            duplicate_prefixes: merge.duplicates,
            conflicting_prefixes: merge.conflicts,
            elapsed: started.elapsed(),
            file_bytes: None,
            output: None,
        };
        (map, report)
    }
}

/// Builds a map from the sources in the order given (earlier sources win conflicts) and writes
/// it crash-safely to `out`.
pub fn build_sources(sources: &[Source], out: &Path) -> Result<BuildReport, FileError> {
    if sources.is_empty() {
        return Err(FileError::NoInput);
    }
    let started = Instant::now();
    let mut b = MapBuilder::new();
    for s in sources {
        b.add(s)?;
    }
    let (map, mut report) = b.finish();
    let built = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let bytes = map.with_built(built).to_bytes();
    write_map_file(out, &bytes)?;
    report.file_bytes = Some(bytes.len() as u64);
    report.output = Some(out.to_path_buf());
    report.elapsed = started.elapsed();
    Ok(report)
}

/// `nearcast-seeder asmap build --mrt FILE... --ranges FILE... --prefixes FILE... -o FILE`.
///
/// Precedence when the same prefix has different origins: MRT dumps first (live BGP data), then
/// prefix tables, then range files; within a kind, in the order given. To honour the order of
/// the command line across kinds, use [`build_sources`].
pub fn build_cli(
    mrt: &[PathBuf],
    ranges: &[PathBuf],
    prefixes: &[PathBuf],
    out: &Path,
) -> Result<BuildReport, FileError> {
    let sources: Vec<Source> = mrt
        .iter()
        .cloned()
        .map(Source::Mrt)
        .chain(prefixes.iter().cloned().map(Source::Prefixes))
        .chain(ranges.iter().cloned().map(Source::Ranges))
        .collect();
    build_sources(&sources, out)
}

/// Opens a file, detecting gzip (`1f 8b`) and bzip2 (`BZh`) by their magic bytes.
fn open_input(path: &Path) -> Result<(Box<dyn Read>, &'static str), FileError> {
    let file = File::open(path).map_err(|e| FileError::io(path, e))?;
    let mut buf = BufReader::with_capacity(1 << 16, file);
    let head = buf.fill_buf().map_err(|e| FileError::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(flate2::bufread::MultiGzDecoder::new(buf)), "gzip"))
    } else if head.starts_with(b"BZh") {
        Ok((Box::new(bzip2::bufread::MultiBzDecoder::new(buf)), "bzip2"))
    } else {
        Ok((Box::new(buf), "plain"))
    }
}

/// Counts bytes and remembers the first error of the stream under the MRT parser, so that a cut
/// in a compressed stream (which can fall on a record boundary and then look like a clean end to
/// the parser) is still reported.
struct Tap<R> {
    inner: R,
    state: Rc<RefCell<TapState>>,
}

#[derive(Default)]
struct TapState {
    bytes: u64,
    error: Option<String>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.state.borrow_mut().bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    let mut s = self.state.borrow_mut();
                    if s.error.is_none() {
                        s.error = Some(e.to_string());
                    }
                }
                Err(e)
            }
        }
    }
}

/// An AS that must not be an origin or a link in the graph: 0, AS_TRANS, documentation,
/// private and reserved ranges.
fn is_special_asn(asn: u32) -> bool {
    asn == 0 || asn == 23456 || (64496..=131071).contains(&asn) || asn >= 4_200_000_000
}

fn read_mrt(builder: &mut AsMapBuilder, reader: impl Read, report: &mut SourceReport) {
    let state = Rc::new(RefCell::new(TapState::default()));
    let tap = Tap {
        inner: reader,
        state: Rc::clone(&state),
    };
    let parser =
        BgpkitParser::from_reader(BufReader::with_capacity(1 << 16, tap)).disable_warnings();
    let mut votes: Vec<(u32, u32)> = Vec::new();
    let mut cut: Option<String> = None;
    for item in parser.into_fallible_record_iter() {
        match item {
            Ok(record) => {
                report.records += 1;
                match record.message {
                    MrtMessage::TableDumpV2Message(TableDumpV2Message::RibAfi(rib)) => {
                        take_rib(builder, &rib, report, &mut votes);
                    }
                    MrtMessage::TableDumpV2Message(TableDumpV2Message::PeerIndexTable(_)) => {}
                    MrtMessage::TableDumpV2Message(_) => {
                        report.skip("MRT record: RIB_GENERIC or geo-location table (unsupported)")
                    }
                    _ => report.skip("MRT record: not TABLE_DUMP_V2 (unsupported)"),
                }
            }
            Err(e) => match &e.error {
                ParserError::EofError(_) | ParserError::IoError(_) => {
                    cut.get_or_insert_with(|| e.error.to_string());
                }
                ParserError::OversizedRecord { .. } => {
                    cut.get_or_insert_with(|| format!("corrupt framing: {}", e.error));
                }
                ParserError::TruncatedMsg(_) => report.skip("MRT record: truncated body"),
                ParserError::Unsupported(_) => report.skip("MRT record: unsupported type"),
                _ => report.skip("MRT record: parse error"),
            },
        }
    }
    let state = state.borrow();
    // A stream error wins over the parser's view of it: it names the real cause.
    if let Some(reason) = state.error.clone().or(cut) {
        report.truncated = Some(format!(
            "input cut after {} complete MRT records ({} bytes of MRT read): {reason}",
            report.records, state.bytes
        ));
    }
}

fn take_rib(
    builder: &mut AsMapBuilder,
    rib: &RibAfiEntries,
    report: &mut SourceReport,
    votes: &mut Vec<(u32, u32)>,
) {
    let prefix = rib.prefix.prefix;
    if prefix.prefix_len() == 0 {
        report.skip("prefix: default route (/0)");
        return;
    }
    votes.clear();
    for entry in &rib.rib_entries {
        report.entries += 1;
        let attrs = &entry.attributes;
        let path = match attrs.as4_path() {
            None => attrs.as_path().map(Cow::Borrowed),
            Some(_) => attrs.effective_as_path().map(Cow::Owned),
        };
        let Some(path) = path else {
            report.skip("RIB entry: no AS path");
            continue;
        };
        let mut prev: Option<u32> = None;
        for seg in &path.segments {
            match seg {
                AsPathSegment::AsSequence(v) => {
                    for asn in v {
                        let a = asn.to_u32();
                        if is_special_asn(a) {
                            prev = None;
                            continue;
                        }
                        if let Some(p) = prev {
                            builder.add_edge(p, a);
                        }
                        prev = Some(a);
                    }
                }
                _ => prev = None,
            }
        }
        let origin = match path.segments.last() {
            Some(AsPathSegment::AsSequence(v)) => match v.last() {
                Some(asn) => Ok(asn.to_u32()),
                None => Err("RIB entry: empty AS path"),
            },
            Some(AsPathSegment::AsSet(_)) => Err("RIB entry: origin is an AS_SET"),
            Some(_) => Err("RIB entry: origin in a confederation segment"),
            None => Err("RIB entry: empty AS path"),
        };
        match origin {
            Ok(a) if is_special_asn(a) => report.skip("RIB entry: reserved or private origin AS"),
            Ok(a) => match votes.iter_mut().find(|(x, _)| *x == a) {
                Some((_, n)) => *n += 1,
                None => votes.push((a, 1)),
            },
            Err(reason) => report.skip(reason),
        }
    }
    // Most votes, then lowest AS number.
    let Some(&(winner, _)) = votes
        .iter()
        .max_by(|x, y| x.1.cmp(&y.1).then(y.0.cmp(&x.0)))
    else {
        report.skip("prefix: no usable origin in any RIB entry");
        return;
    };
    if votes.len() > 1 {
        report.skip("prefix: several origins (MOAS), majority kept, others dropped");
    }
    builder.add_prefix(prefix, winner);
    report.prefixes += 1;
}
