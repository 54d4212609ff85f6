//! Tests on the project's real data in `../shared/data` (RouteViews RIB dumps, the pyasn table,
//! ip-location-db ranges). Each test skips, with a message, when that folder is absent: a user's
//! machine does not have it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use nearcast_asmap::AsMap;
use nearcast_asmap::build::{MapBuilder, SourceKind, build_cli};

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("SKIP: {} is absent", dir.display());
        None
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid IP literal")
}

#[test]
fn truncated_routeviews_ipv4_rib() {
    let Some(d) = data_dir() else { return };
    let mut b = MapBuilder::new();
    let rep = b
        .add_mrt(&d.join("bgp/rib.20140523.0600_firstMB.bz2"))
        .expect("opens")
        .clone();
    println!("{rep:?}");
    assert_eq!(rep.compression, "bzip2");
    // Every complete record before the cut is taken (the first MiB of bzip2 holds ~15 MB of MRT).
    assert!(rep.records > 9000, "{}", rep.records);
    assert!(rep.prefixes > 9000, "{}", rep.prefixes);
    let cut = rep.truncated.as_deref().expect("the cut is reported");
    assert!(cut.contains("complete MRT records"), "{cut}");
    let (m, report) = b.finish();
    println!("{report}");
    assert_eq!(report.warnings(), 1);
    assert_eq!(m.lookup_asn(ip("1.0.0.1")), Some(15169));
    assert_eq!(m.lookup_asn(ip("1.0.129.1")), Some(23969));
    assert_eq!(m.as_distance(1239, 15169), 1);
    assert_eq!(m.as_distance(7545, 56203), 1);
    assert!(m.edge_count() > 5000, "{}", m.edge_count());
}

#[test]
fn truncated_routeviews_ipv6_rib() {
    let Some(d) = data_dir() else { return };
    let mut b = MapBuilder::new();
    let rep = b
        .add_mrt(&d.join("bgp/rib6.20151101.0600_firstMB.bz2"))
        .expect("opens")
        .clone();
    println!("{rep:?}");
    assert!(rep.records > 6000, "{}", rep.records);
    assert!(rep.truncated.is_some());
    let (m, _) = b.finish();
    assert!(m.prefix_count_v6() > 6000);
    assert_eq!(m.prefix_count_v4(), 0);
    assert_eq!(m.lookup_asn(ip("2001:200:137::1")), Some(2500));
    assert_eq!(m.lookup_asn(ip("2001::1")), Some(6939));
    assert_eq!(m.as_distance(2914, 2500), 1);
}

#[test]
fn pyasn_prefix_table() {
    let Some(d) = data_dir() else { return };
    let mut b = MapBuilder::new();
    let rep = b
        .add_prefix_table(&d.join("bgp/ipasn_20140513.dat.gz"))
        .expect("opens")
        .clone();
    assert_eq!((rep.kind, rep.compression), (SourceKind::Prefixes, "gzip"));
    assert_eq!(rep.prefixes, 512_621, "the header says 512621 prefixes");
    assert!(rep.skipped.is_empty(), "{:?}", rep.skipped);
    assert!(rep.truncated.is_none());
    let (m, _) = b.finish();
    assert_eq!(m.prefix_count(), 512_621);
    assert_eq!(m.lookup_asn(ip("8.8.8.8")), Some(15169));
    assert_eq!(m.lookup_asn(ip("1.0.4.1")), Some(56203));
}

#[test]
fn ip_location_db_ranges() {
    let Some(d) = data_dir() else { return };
    let mut b = MapBuilder::new();
    let r4 = b
        .add_ranges(&d.join("ip-location-db/asn-ipv4.csv.gz"))
        .expect("opens")
        .clone();
    let r6 = b
        .add_ranges(&d.join("ip-location-db/asn-ipv6.csv.gz"))
        .expect("opens")
        .clone();
    assert_eq!(r4.records, 411_961);
    assert_eq!(r6.records, 103_197);
    assert!(r4.skipped.is_empty(), "{:?}", r4.skipped);
    assert!(r6.skipped.is_empty(), "{:?}", r6.skipped);
    // Ranges are not all CIDR aligned, so there are more prefixes than rows.
    assert!(r4.prefixes > r4.records);
    let (m, report) = b.finish();
    println!("{report}");
    assert_eq!(m.lookup_asn(ip("1.1.1.1")), Some(13335));
    assert_eq!(m.lookup_asn(ip("8.8.8.8")), Some(15169));
    assert_eq!(m.lookup_asn(ip("9.9.9.9")), Some(19281));
    assert_eq!(m.lookup_asn(ip("2001:4860:4805::1")), Some(43515));
    assert_eq!(m.lookup_asn(ip("2001:4860:4806::1")), Some(15169));
    assert!(m.as_count() > 80_000);
    // The strict core loader accepts the whole file too.
    let file = std::fs::File::open(d.join("ip-location-db/asn-ipv6.csv.gz")).expect("opens");
    let strict = AsMap::from_ranges_csv(std::io::BufReader::new(
        flate2::read::MultiGzDecoder::new(file),
    ))
    .expect("strict parse");
    assert_eq!(strict.prefix_count_v6() as u64, r6.prefixes);
}

#[test]
fn whole_data_map_meets_size_goal() {
    let Some(d) = data_dir() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("all.asmap");
    let report = build_cli(
        &[
            d.join("bgp/rib.20140523.0600_firstMB.bz2"),
            d.join("bgp/rib6.20151101.0600_firstMB.bz2"),
        ],
        &[
            d.join("ip-location-db/asn-ipv4.csv.gz"),
            d.join("ip-location-db/asn-ipv6.csv.gz"),
        ],
        &[d.join("bgp/ipasn_20140513.dat.gz")],
        &out,
    )
    .expect("builds");
    println!("{report}");
    let bytes = std::fs::read(&out).expect("written");
    assert!(bytes.len() <= 16 << 20, "{} bytes", bytes.len());
    let m = AsMap::from_bytes(&bytes).expect("loads");
    assert!(m.heap_size() <= 100 << 20, "{} bytes", m.heap_size());
    assert_eq!(m.prefix_count_v4(), report.prefixes_v4);
    assert_eq!(m.edge_count(), report.edges);
    // Every prefix's first and last address resolve to it or to a more specific prefix.
    for r in m.routes().step_by(7) {
        for probe in [r.prefix.network(), r.prefix.broadcast()] {
            let hit = m.lookup(probe).expect("covered");
            assert!(
                r.prefix.contains(&hit.prefix) && hit.prefix.contains(&probe),
                "{} {probe} -> {}",
                r.prefix,
                hit.prefix
            );
        }
    }
    // MRT first, then the 2014 table, then the 2026 ranges.
    assert_eq!(m.lookup_asn(ip("1.0.0.1")), Some(15169));
    assert_eq!(m.lookup_asn(ip("9.9.9.9")), Some(19281));
}
