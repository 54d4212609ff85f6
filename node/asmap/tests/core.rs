//! Core tests: the pure map (lookup, AS distance, text tables, binary format, hostile input) on
//! the fixtures in `tests/fixtures/` only.

use std::fs::File;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nearcast_asmap::{AsMap, AsMapBuilder, AsMapError, FORMAT_VERSION, MAX_AS_DISTANCE};
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reader(name: &str) -> BufReader<File> {
    BufReader::new(File::open(fixture(name)).expect("fixture present"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid IP literal")
}

/// Real AS paths from the RouteViews RIB of 2014-05-23 (fixture `rib.20140523…`).
const PATHS: &[&[u32]] = &[
    &[1299, 6939, 6939, 7545, 56203],
    &[11686, 6939, 4725, 7670, 7670, 7670, 18144],
    &[1239, 15169],
    &[1221, 4637, 15169],
    &[40191, 6939, 38040, 9737, 23969],
];

/// The prefix table first, then the ranges: the table wins where they disagree.
fn fixture_map() -> AsMap {
    let mut b = AsMapBuilder::new();
    let t = b
        .add_prefix_table(reader("ipasn_20140513.head.dat"), true)
        .expect("prefix table parses");
    assert_eq!(t.prefixes, 300);
    let r4 = b
        .add_ranges_csv(reader("asn-ipv4.head.csv"), true)
        .expect("v4 ranges parse");
    assert_eq!(r4.rows, 300);
    assert!(r4.prefixes >= 300);
    let r6 = b
        .add_ranges_csv(reader("asn-ipv6.head.csv"), true)
        .expect("v6 ranges parse");
    assert_eq!(r6.rows, 100);
    for p in PATHS {
        b.add_as_path(p);
    }
    b.finish().0
}

#[test]
fn known_answers_from_fixtures() {
    let m = fixture_map();
    // ipasn 2014: 1.0.0.0/24 → 15169 (ip-location-db 2026 says 13335; first source wins).
    let r = m.lookup(ip("1.0.0.1")).expect("route");
    assert_eq!(
        (r.prefix.to_string().as_str(), r.asn),
        ("1.0.0.0/24", 15169)
    );
    assert_eq!(m.lookup_asn(ip("1.0.4.9")), Some(56203));
    // A range that is not CIDR aligned: 1.0.128.0–1.0.196.255 → /18 + /22 + /24 (AS 23969),
    // below the ipasn prefixes for 1.0.128.0/17 etc.
    let ranges_only = AsMap::from_ranges_csv(reader("asn-ipv4.head.csv")).expect("parses");
    let r = ranges_only.lookup(ip("1.0.196.7")).expect("route");
    assert_eq!(
        (r.prefix.to_string().as_str(), r.asn),
        ("1.0.196.0/24", 23969)
    );
    let r = ranges_only.lookup(ip("1.0.193.1")).expect("route");
    assert_eq!(r.prefix.to_string(), "1.0.192.0/22");
    assert_eq!(ranges_only.lookup_asn(ip("1.0.0.1")), Some(13335));
    assert_eq!(ranges_only.lookup(ip("1.0.1.1")), None);
    // IPv6: 2001:200::–2001:200:1b9:ffff:… (AS 2500, WIDE) split into /40…/47.
    let r = m.lookup(ip("2001:200:1b9::1")).expect("route");
    assert_eq!(
        (r.prefix.to_string().as_str(), r.asn),
        ("2001:200:1b8::/47", 2500)
    );
    assert_eq!(m.lookup_asn(ip("2001:200:1ba::1")), Some(24047));
    assert_eq!(m.lookup_asn(ip("2001:db8::1")), None);
    assert_eq!(m.lookup_asn(ip("2001::1")), Some(6939));
    // IPv4-mapped IPv6 is looked up as IPv4.
    assert_eq!(m.lookup_asn(ip("::ffff:1.0.4.9")), Some(56203));
    assert_eq!(m.lookup(ip("10.0.0.1")), None);
    assert_eq!(m.ip_as_distance(ip("1.0.4.9"), ip("1.0.4.10")), Some(0));
}

#[test]
fn as_distance_from_real_paths() {
    let m = fixture_map();
    assert_eq!(m.as_distance(15169, 15169), 0);
    assert_eq!(m.as_distance(7545, 56203), 1);
    assert_eq!(m.as_distance(56203, 7545), 1);
    assert_eq!(m.as_distance(7670, 18144), 1, "prepending collapses");
    assert_eq!(m.as_distance(6939, 56203), 2);
    assert_eq!(m.as_distance(1299, 56203), 3);
    assert_eq!(m.as_distance(1299, 18144), MAX_AS_DISTANCE);
    assert_eq!(m.as_distance(1239, 1221), 3, "via 15169 and 4637");
    assert_eq!(
        m.as_distance(15169, 4_000_000),
        MAX_AS_DISTANCE,
        "unknown AS"
    );
    assert!(!m.neighbours(7670).any(|n| n == 7670), "no self-loop");
    assert_eq!(
        m.neighbours(6939).collect::<Vec<_>>(),
        vec![1299, 4725, 7545, 11686, 38040, 40191]
    );
    let with = AsMap::empty().with_edges([(1, 2), (2, 3), (3, 3), (2, 1)]);
    assert_eq!(with.edge_count(), 2);
    assert_eq!(with.as_count(), 3);
    assert_eq!(with.as_distance(1, 3), 2);
}

#[test]
fn empty_map() {
    let m = AsMap::empty();
    assert!(m.is_empty());
    assert_eq!(m.lookup(ip("1.2.3.4")), None);
    assert_eq!(m.lookup(ip("2001:db8::1")), None);
    assert_eq!(m.as_distance(1, 1), 0);
    assert_eq!(m.as_distance(1, 2), MAX_AS_DISTANCE);
    let back = AsMap::from_bytes(&m.to_bytes()).expect("empty map round trip");
    assert_eq!(back, m);
}

#[test]
fn round_trip() {
    let m = fixture_map();
    let bytes = m.to_bytes();
    assert_eq!(&bytes[..8], b"NCASMAP\0");
    let back = AsMap::from_bytes(&bytes).expect("own output decodes");
    assert_eq!(back, m);
    assert_eq!(back.to_bytes(), bytes, "encoding is deterministic");
    for r in m.routes() {
        let probe = r.prefix.network();
        assert_eq!(back.lookup(probe), m.lookup(probe));
        // The longest match for a prefix's own network is that prefix or a more specific one.
        let hit = m.lookup(probe).expect("own prefix matches").prefix;
        assert!(hit.prefix_len() >= r.prefix.prefix_len() && r.prefix.contains(&hit));
    }
    assert_eq!(
        back.edges().collect::<Vec<_>>(),
        m.edges().collect::<Vec<_>>()
    );
}

#[test]
fn describe_lookup_text() {
    let m = fixture_map();
    let text = m.describe_lookup(&[ip("1.0.4.9"), ip("1.0.0.1")]);
    assert!(text.contains("1.0.4.9  1.0.4.0/24  AS56203"), "{text}");
    assert!(
        text.contains("AS distance 1.0.4.9 (AS56203) - 1.0.0.1 (AS15169): >= 4"),
        "{text}"
    );
    let text = m.describe_lookup(&[ip("10.0.0.1")]);
    assert!(text.contains("10.0.0.1  no route"), "{text}");
}

// ---- hostile input -------------------------------------------------------------------------

/// Wraps a body in a valid header (so that the checks past the checksum are reached).
/// Seals a hand-written version 1 body (no build time) with a valid header.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"NCASMAP\0");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(body));
    out.extend_from_slice(body);
    out
}

/// Header and build time of a version 2 file: what follows is a version 1 body.
const HEADER: usize = 52 + 8;

#[test]
fn build_time_orders_maps_and_version_1_still_reads() {
    let m = fixture_map().with_built(1_764_000_000);
    let bytes = m.to_bytes();
    assert_eq!(&bytes[8..12], &FORMAT_VERSION.to_le_bytes());
    let back = AsMap::from_bytes(&bytes).expect("decodes");
    assert_eq!(back.built(), 1_764_000_000);
    assert_eq!(back, m);
    // The same content in a version 1 file: read, with build time 0.
    let v1 = AsMap::from_bytes(&seal(&bytes[HEADER..])).expect("version 1 decodes");
    assert_eq!(v1.built(), 0);
    assert_eq!(v1.prefix_count(), m.prefix_count());
    assert_eq!(v1.with_built(m.built()), m);
    // A version 2 body cut inside its build time is refused.
    let mut short = bytes[..52].to_vec();
    short[12..20].copy_from_slice(&4u64.to_le_bytes());
    short[20..52].copy_from_slice(&Sha256::digest([0u8; 4]));
    short.extend_from_slice(&[0u8; 4]);
    assert!(matches!(
        AsMap::from_bytes(&short),
        Err(AsMapError::Truncated {
            what: "build time",
            ..
        })
    ));
}

#[test]
fn rejects_bad_header() {
    let good = fixture_map().to_bytes();
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(AsMap::from_bytes(&bad), Err(AsMapError::BadMagic)));
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        AsMap::from_bytes(&bad),
        Err(AsMapError::UnsupportedVersion { found: 99, .. })
    ));
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert!(matches!(
        AsMap::from_bytes(&bad),
        Err(AsMapError::ChecksumMismatch)
    ));
    let mut bad = good.clone();
    bad[20] ^= 0xff; // checksum byte
    assert!(matches!(
        AsMap::from_bytes(&bad),
        Err(AsMapError::ChecksumMismatch)
    ));
    assert!(matches!(
        AsMap::from_bytes(b""),
        Err(AsMapError::Truncated { .. })
    ));
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        AsMap::from_bytes(&longer),
        Err(AsMapError::LengthMismatch { .. })
    ));
}

#[test]
fn rejects_every_truncation() {
    let good = fixture_map().to_bytes();
    for len in 0..good.len() {
        let r = AsMap::from_bytes(&good[..len]);
        assert!(r.is_err(), "a map cut to {len} bytes must not decode");
    }
    // Truncated bodies with a header resealed to match: the body parser itself must notice.
    let body = &good[HEADER..];
    for len in (0..body.len()).step_by(97) {
        let r = AsMap::from_bytes(&seal(&body[..len]));
        assert!(r.is_err(), "a body cut to {len} bytes must not decode");
    }
}

#[test]
fn rejects_absurd_prefix_lengths() {
    // 1 AS (AS 1); one IPv4 prefix 0.0.0.0/33; no IPv6; no edges.
    let e = AsMap::from_bytes(&seal(&[1, 1, 1, 0, 33, 0, 0, 0])).expect_err("len 33");
    assert!(
        matches!(e, AsMapError::PrefixLength { family: 4, len: 33 }),
        "{e}"
    );
    let e = AsMap::from_bytes(&seal(&[1, 1, 0, 1, 0, 129, 0, 0])).expect_err("len 129");
    assert!(
        matches!(
            e,
            AsMapError::PrefixLength {
                family: 6,
                len: 129
            }
        ),
        "{e}"
    );
    let e = AsMap::from_bytes(&seal(&[1, 1, 1, 0, 255, 0, 0, 0])).expect_err("len 255");
    assert!(matches!(e, AsMapError::PrefixLength { .. }), "{e}");
    // Host bits: 0.0.0.1/24.
    let e = AsMap::from_bytes(&seal(&[1, 1, 1, 1, 24, 0, 0, 0])).expect_err("host bits");
    assert!(matches!(e, AsMapError::HostBits { family: 4, .. }), "{e}");
    // An IPv4 network beyond 255.255.255.255.
    let e = AsMap::from_bytes(&seal(&[1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 32, 0, 0, 0]))
        .expect_err("v4 overflow");
    assert!(matches!(e, AsMapError::BadVarint { .. }), "{e}");
    // A valid minimal map decodes: 0.0.0.0/8 → AS 1.
    let m = AsMap::from_bytes(&seal(&[1, 1, 1, 0, 8, 0, 0, 0])).expect("valid");
    assert_eq!(m.lookup_asn(ip("0.1.2.3")), Some(1));
}

#[test]
fn rejects_huge_counts() {
    // AS count 2^40 with a handful of bytes behind it.
    let mut body = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    body.extend_from_slice(&[1, 0, 0, 0]);
    let e = AsMap::from_bytes(&seal(&body)).expect_err("huge AS count");
    assert!(
        matches!(e, AsMapError::CountTooLarge { what: "AS", .. }),
        "{e}"
    );
    // 10^9 IPv4 prefixes promised, none present.
    let mut body = vec![1, 1];
    let mut n = 1_000_000_000u64;
    while n >= 0x80 {
        body.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    body.extend_from_slice(&[0, 0]);
    let e = AsMap::from_bytes(&seal(&body)).expect_err("huge prefix count");
    assert!(matches!(e, AsMapError::CountTooLarge { .. }), "{e}");
    // u64::MAX edges.
    let mut body = vec![2, 1, 1, 0, 0];
    body.extend_from_slice(&[0xff; 9]);
    body.push(0x01);
    let e = AsMap::from_bytes(&seal(&body)).expect_err("huge edge count");
    assert!(matches!(e, AsMapError::CountTooLarge { .. }), "{e}");
    // Varint longer than its type.
    let e = AsMap::from_bytes(&seal(&[0xff; 12])).expect_err("long varint");
    assert!(matches!(e, AsMapError::BadVarint { .. }), "{e}");
}

#[test]
fn rejects_bad_references_and_order() {
    // Edge (0, 5) with only 2 ASes.
    let e = AsMap::from_bytes(&seal(&[2, 1, 1, 0, 0, 1, 0, 5])).expect_err("unknown AS");
    assert!(
        matches!(e, AsMapError::UnknownAsIndex { what: "edge", .. }),
        "{e}"
    );
    // Prefix referencing AS index 3 of 1.
    let e = AsMap::from_bytes(&seal(&[1, 1, 1, 0, 8, 3, 0, 0])).expect_err("unknown AS");
    assert!(matches!(e, AsMapError::UnknownAsIndex { .. }), "{e}");
    // Same prefix twice.
    let e = AsMap::from_bytes(&seal(&[1, 1, 2, 0, 8, 0, 0, 8, 0, 0, 0])).expect_err("dup");
    assert!(matches!(e, AsMapError::NotSorted { .. }), "{e}");
    // AS table not ascending (1 then +0).
    let e = AsMap::from_bytes(&seal(&[2, 1, 0, 0, 0, 0])).expect_err("AS order");
    assert!(matches!(e, AsMapError::NotSorted { what: "AS", .. }), "{e}");
    // Self-loop edge (0, 0).
    let e = AsMap::from_bytes(&seal(&[2, 1, 1, 0, 0, 1, 0, 0])).expect_err("self-loop");
    assert!(
        matches!(e, AsMapError::NotSorted { what: "edge", .. }),
        "{e}"
    );
    // Trailing bytes.
    let e = AsMap::from_bytes(&seal(&[0, 0, 0, 0, 7])).expect_err("trailing");
    assert!(matches!(e, AsMapError::TrailingBytes(1)), "{e}");
}

#[test]
fn survives_random_corruption() {
    let good = fixture_map().to_bytes();
    let body = good[HEADER..].to_vec();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut decoded = 0;
    for _ in 0..3000 {
        let mut b = body.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        if let Ok(m) = AsMap::from_bytes(&seal(&b)) {
            decoded += 1;
            // Whatever decodes must be usable.
            let _ = m.lookup(ip("1.0.4.9"));
            let _ = m.lookup(ip("2001:200::1"));
            let _ = m.as_distance(6939, 56203);
            assert!(AsMap::from_bytes(&m.to_bytes()).is_ok());
        }
    }
    // Most single-byte changes keep the structure valid (they change values), some do not.
    assert!(decoded > 0);
}

#[test]
fn strict_csv_errors_name_the_line() {
    let csv = "1.0.0.0,1.0.0.255,13335,x\n1.0.1.0,1.0.0.0,5,backwards\n";
    let e = AsMap::from_ranges_csv(csv.as_bytes()).expect_err("backwards range");
    assert!(matches!(e, AsMapError::Parse { line: 2, .. }), "{e}");
    let csv = "1.0.0.0,2001:db8::,5,mixed\n";
    let e = AsMap::from_ranges_csv(csv.as_bytes()).expect_err("mixed families");
    assert!(matches!(e, AsMapError::Parse { line: 1, .. }), "{e}");
    let csv = "1.0.0.0,1.0.0.255\n";
    assert!(AsMap::from_ranges_csv(csv.as_bytes()).is_err());
    let csv = b"1.0.0.0,1.0.0.255,1,\xff\xfe\n";
    assert!(AsMap::from_ranges_csv(&csv[..]).is_err(), "not UTF-8");
}
