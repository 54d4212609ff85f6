//! The core's side of proximity-map distribution: who is asked, whose announcements count,
//! ordering by build time, failed ids, local maps, and the atomic switch of the map in use.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use nearcast_asmap::AsMap;
use nearcast_proto::{
    AsMapRef, Config, Contact, Locality, MapRejected, MapSource, Node, ObjectId, Output, Request,
    RequestId, Response, Role, SourceClass,
};

fn ip(a: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, 0, host))
}

fn map(built: u64) -> Arc<AsMap> {
    // AS 64501 in two prefixes: 127.1.0/24 and 127.1.2/24.
    let csv =
        "127.1.0.0,127.1.0.255,64501\n127.1.2.0,127.1.2.255,64501\n127.2.0.0,127.2.255.255,64502\n";
    Arc::new(
        AsMap::from_ranges_csv(csv.as_bytes())
            .expect("as table")
            .with_built(built),
    )
}

fn id(b: u8) -> ObjectId {
    ObjectId([b; 32])
}

const SEEDERS: [u32; 2] = [1, 2];

/// A following leaf (peer 10 at 127.1.0.10) with seeders 1 and 2 and no map.
fn leaf() -> Node<u32> {
    let seeders: Vec<Contact<u32>> = SEEDERS
        .iter()
        .map(|&s| Contact::new(s, ip(9, s as u8), 4000))
        .collect();
    let own = Contact::new(10u32, ip(1, 10), 4000);
    let mut cfg = Config::new(own.clone(), Role::Leaf, seeders, 7);
    cfg.follow_published_asmap = true;
    cfg.timing.maintenance_ms = 100;
    cfg.timing.asmap_check_ms = 10_000;
    Node::new(cfg, Locality::new(Arc::new(AsMap::empty()), own.ip), 0)
}

/// Runs timers up to `now` and returns the `GetAsMap` requests sent, and every other output.
fn step(n: &mut Node<u32>, now: u64) -> (Vec<(RequestId, u32)>, Vec<Output<u32>>) {
    n.handle_timeout(now);
    let mut asks = Vec::new();
    let mut other = Vec::new();
    while let Some(o) = n.poll_output() {
        match o {
            Output::Request {
                id,
                to,
                request: Request::GetAsMap,
            } => asks.push((id, to.peer)),
            o => other.push(o),
        }
    }
    (asks, other)
}

fn offers(outputs: &[Output<u32>]) -> Vec<AsMapRef> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::AsMapOffered { map } => Some(*map),
            _ => None,
        })
        .collect()
}

fn answer(n: &mut Node<u32>, req: RequestId, current: Option<AsMapRef>) -> Vec<AsMapRef> {
    n.handle_response(300, req, Ok(Response::AsMap { current }));
    let mut out = Vec::new();
    while let Some(o) = n.poll_output() {
        out.push(o);
    }
    offers(&out)
}

#[test]
fn asks_only_configured_seeders_and_follows_newer_maps() {
    let mut n = leaf();
    let (asks, _) = step(&mut n, 200);
    let mut asked: Vec<u32> = asks.iter().map(|a| a.1).collect();
    asked.sort();
    assert_eq!(asked, SEEDERS.to_vec(), "every configured seeder is asked");
    // Not again before the check period.
    let (again, _) = step(&mut n, 5_000);
    assert!(again.is_empty());

    let v100 = AsMapRef {
        object: id(1),
        built: 100,
    };
    assert_eq!(answer(&mut n, asks[0].0, Some(v100)), vec![v100]);
    // The other seeder announces an older map while the first is being fetched: ignored.
    let older = AsMapRef {
        object: id(2),
        built: 50,
    };
    assert!(answer(&mut n, asks[1].0, Some(older)).is_empty());

    // Before the install, classification has no AS to go on (and no common /24).
    let same_as_other_prefix = IpAddr::V4(Ipv4Addr::new(127, 1, 2, 7));
    assert_eq!(
        n.locality().class_of(same_as_other_prefix),
        SourceClass::OtherAs
    );
    assert_eq!(n.install_asmap(id(1), map(100)), Ok(v100));
    assert_eq!(n.asmap().source(), MapSource::Published);
    assert_eq!(n.asmap().current(), Some(v100));
    assert_eq!(
        n.locality().class_of(same_as_other_prefix),
        SourceClass::SameAs
    );
    assert_eq!(n.locality().own_asn(), Some(64501));

    // Next round: the same map and an older one are not offered; a newer one is.
    let (asks, _) = step(&mut n, 20_000);
    assert_eq!(asks.len(), 2);
    assert!(answer(&mut n, asks[0].0, Some(v100)).is_empty());
    assert!(answer(&mut n, asks[1].0, Some(older)).is_empty());
    // A map that decodes older than the one in use is refused and the map in use kept.
    assert!(matches!(
        n.install_asmap(id(2), map(50)),
        Err(MapRejected::NotNewer { .. })
    ));
    assert_eq!(n.asmap().current(), Some(v100));
    let (asks, _) = step(&mut n, 40_000);
    let v200 = AsMapRef {
        object: id(3),
        built: 200,
    };
    assert_eq!(answer(&mut n, asks[0].0, Some(v200)), vec![v200]);
}

#[test]
fn a_peer_never_answers_for_the_seeders() {
    // A node that is not a configured seeder may answer `GetAsMap` (with what it uses), but a
    // leaf never asks one: supernodes learnt from the overlay are not asked.
    let mut n = leaf();
    let own = n.own().clone();
    n.handle_request(
        10,
        &5,
        Request::Attach {
            me: Contact::new(5u32, ip(1, 5), 4000),
            role: Role::Supernode,
        },
    );
    let (asks, _) = step(&mut n, 200);
    assert!(asks.iter().all(|(_, to)| SEEDERS.contains(to)), "{asks:?}");
    assert_eq!(own.peer, 10);
    assert_eq!(
        n.handle_request(20, &5, Request::GetAsMap),
        Response::AsMap { current: None }
    );
}

#[test]
fn a_bad_map_is_not_fetched_again_and_the_old_one_stays() {
    let mut n = leaf();
    assert!(n.install_asmap(id(1), map(100)).is_ok());
    let (asks, _) = step(&mut n, 200);
    let bad = AsMapRef {
        object: id(9),
        built: 300,
    };
    assert_eq!(answer(&mut n, asks[0].0, Some(bad)), vec![bad]);
    // The driver could not decode it.
    n.asmap_failed(400, id(9), true);
    assert_eq!(n.asmap().current().map(|r| r.object), Some(id(1)));
    assert_eq!(n.locality().own_asn(), Some(64501), "old map kept");
    assert!(answer(&mut n, asks[1].0, Some(bad)).is_empty());
    let (asks, _) = step(&mut n, 20_000);
    for (req, _) in asks {
        assert!(answer(&mut n, req, Some(bad)).is_empty(), "never retried");
    }
    // A fetch that merely failed is retried at the next check (within a minute).
    let flaky = AsMapRef {
        object: id(8),
        built: 400,
    };
    let (asks, _) = step(&mut n, 40_000);
    assert_eq!(answer(&mut n, asks[0].0, Some(flaky)), vec![flaky]);
    n.asmap_failed(40_100, id(8), false);
    let (asks, _) = step(&mut n, 100_200);
    assert!(!asks.is_empty());
    assert_eq!(answer(&mut n, asks[0].0, Some(flaky)), vec![flaky]);
}

#[test]
fn a_local_map_wins_and_a_seeder_announces_what_it_publishes() {
    let mut n = leaf();
    n.use_local_asmap(map(5), None);
    assert_eq!(n.asmap().source(), MapSource::Local);
    let (asks, _) = step(&mut n, 200);
    assert!(asks.is_empty(), "a node with a local map does not ask");
    assert_eq!(n.install_asmap(id(1), map(100)), Err(MapRejected::LocalMap));
    assert_eq!(n.locality().map().built(), 5);

    let own = Contact::new(1u32, ip(9, 1), 4000);
    let mut cfg = Config::new(own.clone(), Role::Seeder, vec![own.clone()], 1);
    cfg.follow_published_asmap = true;
    let mut s = Node::new(cfg, Locality::new(Arc::new(AsMap::empty()), own.ip), 0);
    let published = AsMapRef {
        object: id(4),
        built: 5,
    };
    s.use_local_asmap(map(5), Some(published));
    assert_eq!(
        s.handle_request(10, &10, Request::GetAsMap),
        Response::AsMap {
            current: Some(published)
        }
    );
}
