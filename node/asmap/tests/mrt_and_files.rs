//! Feature `build` on the fixtures: MRT RIB dumps (truncated, IPv4 and IPv6), compression
//! detection, source precedence, the crash-safe writer and the CLI entry points.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nearcast_asmap::build::{MapBuilder, Source, SourceKind, build_cli, build_sources};
use nearcast_asmap::{AsMap, MAX_AS_DISTANCE, load_map_file, lookup_cli};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid IP literal")
}

const RIB4: &str = "rib.20140523.0600.head128k.mrt.bz2";
const RIB6: &str = "rib6.20151101.0600.head64k.mrt.bz2";

fn plain_mrt(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    bzip2::read::MultiBzDecoder::new(std::fs::File::open(fixture(name)).expect("fixture"))
        .read_to_end(&mut out)
        .expect("fixture decompresses");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn truncated_ipv4_rib_fixture() {
    let mut b = MapBuilder::new();
    let rep = b.add_mrt(&fixture(RIB4)).expect("opens").clone();
    assert_eq!(rep.kind, SourceKind::Mrt);
    assert_eq!(rep.compression, "bzip2");
    // The 128 KiB cut holds the peer index table and 93 complete RIB records; the 95th is cut.
    assert_eq!(rep.records, 94);
    let cut = rep.truncated.as_deref().expect("the cut is reported");
    assert!(cut.contains("94 complete MRT records"), "{cut}");
    assert!(cut.contains("truncated MRT body"), "{cut}");
    assert_eq!(rep.skipped.get("prefix: default route (/0)"), Some(&1));
    assert!(rep.entries > 2000);

    let (m, report) = b.finish();
    assert_eq!(report.warnings(), 1);
    let text = report.to_string();
    assert!(text.contains("WARNING truncated"), "{text}");
    assert!(m.prefix_count_v4() >= 90);
    // Known answers: addresses in prefixes of the dump map to the dump's origin AS.
    for (addr, prefix, asn) in [
        ("1.0.0.1", "1.0.0.0/24", 15169),
        ("1.0.4.200", "1.0.4.0/24", 56203),
        ("1.0.64.1", "1.0.64.0/18", 18144),
        ("1.0.129.77", "1.0.129.0/24", 23969),
        ("1.0.131.1", "1.0.128.0/19", 9737),
        ("1.0.150.1", "1.0.128.0/19", 9737),
        ("1.0.170.1", "1.0.160.0/19", 9737),
        ("1.1.1.1", "1.1.1.0/24", 15169),
    ] {
        let r = m.lookup(ip(addr)).expect(addr);
        assert_eq!(
            (r.prefix.to_string().as_str(), r.asn),
            (prefix, asn),
            "{addr}"
        );
    }
    // The default route of the dump is not used.
    assert_eq!(m.lookup(ip("0.0.0.1")), None);
    // Adjacency from AS paths: 1239 15169; 1299 6939 6939 7545 56203; … 7670 7670 7670 18144.
    assert_eq!(m.as_distance(15169, 15169), 0);
    assert_eq!(m.as_distance(1239, 15169), 1);
    assert_eq!(m.as_distance(7545, 56203), 1);
    assert_eq!(m.as_distance(6939, 7545), 1);
    assert_eq!(m.as_distance(7670, 18144), 1, "prepending collapsed");
    assert_eq!(m.as_distance(9737, 23969), 1);
    assert!(m.as_distance(38040, 23969) <= 2);
    // The default route's path 2905 65023 16637 passes a private AS: no edge to or across it.
    assert!(!m.contains_as(65023));
    assert_ne!(m.as_distance(2905, 16637), 1);
    assert!(m.as_distance(15169, 4_000_000) == MAX_AS_DISTANCE);
}

#[test]
fn truncated_ipv6_rib_fixture() {
    let mut b = MapBuilder::new();
    let rep = b.add_mrt(&fixture(RIB6)).expect("opens").clone();
    assert_eq!(rep.records, 36);
    assert!(rep.truncated.is_some());
    let (m, _) = b.finish();
    assert_eq!(m.prefix_count_v4(), 0);
    // 2001::/32: most peers say 6939, a few see Teredo relays (1101, 25192): majority kept.
    assert_eq!(m.lookup_asn(ip("2001::1")), Some(6939));
    let r = m.lookup(ip("2001:200:136::1")).expect("route");
    assert_eq!(
        (r.prefix.to_string().as_str(), r.asn),
        ("2001:200:136::/48", 9367)
    );
    let r = m.lookup(ip("2001:200:137::1")).expect("route");
    assert_eq!(
        (r.prefix.to_string().as_str(), r.asn),
        ("2001:200::/32", 2500)
    );
    assert_eq!(m.lookup_asn(ip("2001:4:112::1")), Some(112));
    assert_eq!(m.as_distance(7660, 9367), 1);
    assert_eq!(m.as_distance(2914, 2500), 1);
}

#[test]
fn compression_is_detected_by_magic_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = plain_mrt(RIB4);
    // Misleading names on purpose.
    let p_plain = dir.path().join("rib.gz");
    let p_gz = dir.path().join("rib.mrt");
    std::fs::write(&p_plain, &plain).expect("write");
    std::fs::write(&p_gz, gzip(&plain)).expect("write");
    let mut reference = MapBuilder::new();
    reference.add_mrt(&fixture(RIB4)).expect("opens");
    let (reference, _) = reference.finish();
    for (path, kind) in [(&p_plain, "plain"), (&p_gz, "gzip")] {
        let mut b = MapBuilder::new();
        let rep = b.add_mrt(path).expect("opens");
        assert_eq!(rep.compression, kind);
        assert_eq!(rep.records, 94);
        assert!(rep.truncated.is_some());
        assert_eq!(b.finish().0, reference);
    }
    // A reader works too.
    let mut b = MapBuilder::new();
    let rep = b.add_mrt_reader(Path::new("memory"), &plain[..]);
    assert_eq!(rep.records, 94);
    assert_eq!(b.finish().0, reference);
}

#[test]
fn cut_compressed_streams_keep_what_was_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = gzip(&plain_mrt(RIB4));
    let half = dir.path().join("half.gz");
    std::fs::write(&half, &gz[..gz.len() / 2]).expect("write");
    let mut b = MapBuilder::new();
    let rep = b.add_mrt(&half).expect("opens").clone();
    assert!(rep.records > 10 && rep.records < 94, "{}", rep.records);
    assert!(rep.truncated.is_some(), "{rep:?}");
    let (m, _) = b.finish();
    assert_eq!(m.lookup_asn(ip("1.0.0.1")), Some(15169));

    // bzip2 cut inside its only block: nothing decodes, and that is reported, not a panic.
    let bz = std::fs::read(fixture(RIB4)).expect("fixture");
    let cut = dir.path().join("cut.bz2");
    std::fs::write(&cut, &bz[..bz.len() - 100]).expect("write");
    let mut b = MapBuilder::new();
    let rep = b.add_mrt(&cut).expect("opens");
    assert!(rep.truncated.is_some(), "{rep:?}");

    // Garbage is not MRT: reported, no panic.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0xabu8; 5000]).expect("write");
    let mut b = MapBuilder::new();
    let rep = b.add_mrt(&junk).expect("opens");
    assert_eq!(rep.prefixes, 0);
    assert!(
        rep.truncated.is_some() || !rep.skipped.is_empty(),
        "{rep:?}"
    );

    // A missing file is an error.
    assert!(
        MapBuilder::new()
            .add_mrt(&dir.path().join("absent"))
            .is_err()
    );
}

#[test]
fn tables_from_files_and_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = std::fs::read(fixture("asn-ipv4.head.csv")).expect("fixture");
    let csv_gz = dir.path().join("ranges.csv.gz");
    std::fs::write(&csv_gz, gzip(&csv)).expect("write");
    let table = fixture("ipasn_20140513.head.dat");

    // Ranges first: 1.0.0.0/24 is Cloudflare's (2026 data).
    let mut b = MapBuilder::new();
    let r = b.add_ranges(&csv_gz).expect("opens").clone();
    assert_eq!(
        (r.kind, r.compression, r.records),
        (SourceKind::Ranges, "gzip", 300)
    );
    b.add_prefix_table(&table).expect("opens");
    let (m, rep) = b.finish();
    assert_eq!(m.lookup_asn(ip("1.0.0.1")), Some(13335));
    assert!(rep.conflicting_prefixes > 0);

    // Prefix table first: Google's in 2014.
    let mut b = MapBuilder::new();
    let t = b.add_prefix_table(&table).expect("opens").clone();
    assert_eq!(
        (t.kind, t.records, t.prefixes),
        (SourceKind::Prefixes, 305, 300)
    );
    b.add_ranges(&csv_gz).expect("opens");
    let (m, _) = b.finish();
    assert_eq!(m.lookup_asn(ip("1.0.0.1")), Some(15169));
}

#[test]
fn build_and_lookup_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("map.asmap");
    let report = build_cli(
        &[fixture(RIB4), fixture(RIB6)],
        &[fixture("asn-ipv4.head.csv"), fixture("asn-ipv6.head.csv")],
        &[fixture("ipasn_20140513.head.dat")],
        &out,
    )
    .expect("builds");
    let text = report.to_string();
    assert!(
        text.contains("skipped 1: prefix: default route (/0)"),
        "{text}"
    );
    assert!(text.contains("2 warning(s)"), "{text}");
    assert_eq!(report.sources.len(), 5);
    assert_eq!(
        report.sources[2].kind,
        SourceKind::Prefixes,
        "MRT, prefixes, ranges"
    );
    assert!(report.records_read() > 700);
    let size = std::fs::metadata(&out).expect("written").len();
    assert_eq!(report.file_bytes, Some(size));
    // Only the map in the directory: the temporary file was renamed.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("readable")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let m = load_map_file(&out).expect("loads");
    // MRT first: 1.0.0.0/24 → 15169 (the ranges say 13335).
    assert_eq!(m.lookup_asn(ip("1.0.0.1")), Some(15169));
    assert_eq!(m.as_distance(7545, 56203), 1);

    let text = lookup_cli(&out, &[ip("1.0.4.9"), ip("1.0.5.1")]).expect("lookup");
    assert!(text.contains("1.0.4.9  1.0.4.0/24  AS56203"), "{text}");
    assert!(text.contains("): 0"), "{text}");
    let text = lookup_cli(&out, &[ip("1.0.0.1"), ip("1.0.20.1")]).expect("lookup");
    assert!(text.contains("AS15169"), "{text}");
    assert!(text.contains("AS distance"), "{text}");
    let text = lookup_cli(
        &out,
        &[ip("10.1.1.1"), ip("2001:200:136::5"), ip("1.0.0.1")],
    )
    .expect("lookup");
    assert!(text.contains("10.1.1.1         no route"), "{text}");
    assert!(text.contains("2001:200:136::/48  AS9367"), "{text}");
    assert!(!text.contains("AS distance"), "{text}");

    // A corrupt map file is an error, and the file is left alone for the caller to report.
    let mut bytes = std::fs::read(&out).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    let bad = dir.path().join("bad.asmap");
    std::fs::write(&bad, &bytes).expect("write");
    let e = lookup_cli(&bad, &[ip("1.0.0.1")]).expect_err("checksum");
    assert!(e.to_string().contains("checksum"), "{e}");

    // Ordered sources: ranges named first win.
    let out2 = dir.path().join("map2.asmap");
    build_sources(
        &[
            Source::Ranges(fixture("asn-ipv4.head.csv")),
            Source::Mrt(fixture(RIB4)),
        ],
        &out2,
    )
    .expect("builds");
    let m2 = load_map_file(&out2).expect("loads");
    assert_eq!(m2.lookup_asn(ip("1.0.0.1")), Some(13335));
    assert!(build_sources(&[], &out2).is_err());
    assert_eq!(
        AsMap::from_bytes(&std::fs::read(&out2).expect("read")).ok(),
        Some(m2)
    );
}
