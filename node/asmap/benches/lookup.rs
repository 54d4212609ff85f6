//! Lookup and AS-distance benchmarks (divan) on a map built from all of `shared/data`, or from
//! the fixtures when that folder is absent.
//!
//! `cargo bench -p nearcast-asmap --features build --bench lookup`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use divan::Bencher;
use nearcast_asmap::AsMap;
use nearcast_asmap::build::MapBuilder;

fn main() {
    divan::main();
}

fn map() -> &'static AsMap {
    static MAP: OnceLock<AsMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let data = root.join("../../../shared/data");
        let mut b = MapBuilder::new();
        let ok = if data.is_dir() {
            [
                b.add_mrt(&data.join("bgp/rib.20140523.0600_firstMB.bz2"))
                    .is_ok(),
                b.add_mrt(&data.join("bgp/rib6.20151101.0600_firstMB.bz2"))
                    .is_ok(),
                b.add_prefix_table(&data.join("bgp/ipasn_20140513.dat.gz"))
                    .is_ok(),
                b.add_ranges(&data.join("ip-location-db/asn-ipv4.csv.gz"))
                    .is_ok(),
                b.add_ranges(&data.join("ip-location-db/asn-ipv6.csv.gz"))
                    .is_ok(),
            ]
        } else {
            let f = root.join("tests/fixtures");
            [
                b.add_mrt(&f.join("rib.20140523.0600.head128k.mrt.bz2"))
                    .is_ok(),
                b.add_mrt(&f.join("rib6.20151101.0600.head64k.mrt.bz2"))
                    .is_ok(),
                b.add_prefix_table(&f.join("ipasn_20140513.head.dat"))
                    .is_ok(),
                b.add_ranges(&f.join("asn-ipv4.head.csv")).is_ok(),
                b.add_ranges(&f.join("asn-ipv6.head.csv")).is_ok(),
            ]
        };
        assert!(ok.iter().all(|&x| x), "bench inputs readable");
        let (m, _) = b.finish();
        eprintln!("bench map: {m:?}");
        m
    })
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Uniformly random IPv4 addresses (about 2/3 have a route in the full map).
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn lookup_v4_random(bencher: Bencher) {
    let m = map();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    bencher
        .with_inputs(|| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .bench_local_values(|ip| black_box(m.lookup(ip)));
}

/// Random addresses inside the map's own prefixes (always a hit), from `routes` (IPv4 and IPv6
/// mixed as in the map: 85% / 15% on the full data).
fn bench_hits(bencher: Bencher, routes: Vec<ipnet::IpNet>) {
    let m = map();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    bencher
        .with_inputs(|| {
            let net = routes[(rng.next() % routes.len() as u64) as usize];
            match net {
                ipnet::IpNet::V4(n) => {
                    let host = (rng.next() as u32) & !u32::from(n.netmask());
                    IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
                }
                ipnet::IpNet::V6(n) => {
                    let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
                    let host = r & !u128::from(n.netmask());
                    IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
                }
            }
        })
        .bench_local_values(|ip| black_box(m.lookup(ip)));
}

/// Addresses inside the map's prefixes, both families.
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn lookup_hit(bencher: Bencher) {
    bench_hits(bencher, map().routes().map(|r| r.prefix).collect());
}

/// Addresses inside the map's IPv4 prefixes.
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn lookup_hit_v4(bencher: Bencher) {
    let routes = map().routes().map(|r| r.prefix);
    bench_hits(
        bencher,
        routes
            .filter(|p| matches!(p, ipnet::IpNet::V4(_)))
            .collect(),
    );
}

/// Addresses inside the map's IPv6 prefixes.
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn lookup_hit_v6(bencher: Bencher) {
    let routes = map().routes().map(|r| r.prefix);
    bench_hits(
        bencher,
        routes
            .filter(|p| matches!(p, ipnet::IpNet::V6(_)))
            .collect(),
    );
}

/// Random IPv6 addresses in 2000::/4 (global unicast).
#[divan::bench(sample_count = 200, sample_size = 2000)]
fn lookup_v6_random(bencher: Bencher) {
    let m = map();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    bencher
        .with_inputs(|| {
            let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            IpAddr::V6(Ipv6Addr::from((0x2u128 << 124) | (r >> 4)))
        })
        .bench_local_values(|ip| black_box(m.lookup(ip)));
}

/// AS distance between two random ASes that have at least one adjacency.
#[divan::bench(sample_count = 100, sample_size = 100)]
fn as_distance_connected(bencher: Bencher) {
    let m = map();
    let connected: Vec<u32> = m
        .ases()
        .iter()
        .copied()
        .filter(|&a| m.neighbours(a).next().is_some())
        .collect();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    bencher
        .with_inputs(|| {
            let a = connected[(rng.next() % connected.len() as u64) as usize];
            let b = connected[(rng.next() % connected.len() as u64) as usize];
            (a, b)
        })
        .bench_local_values(|(a, b)| black_box(m.as_distance(a, b)));
}
