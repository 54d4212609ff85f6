//! A leaf's attachment traffic: what it tells a parent about its holdings, and when.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use nearcast_asmap::AsMap;
use nearcast_proto::rendezvous::seeders_for;
use nearcast_proto::{
    Config, Contact, Locality, Node, ObjectId, Output, Request, RequestError, Response, Role,
};

const SEEDER: u32 = 1;

fn ip(a: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, 0, host))
}

/// Runs timers up to `now`; answers every `Attach` with `Attached` (no supernodes to offer),
/// recording whom it went to, and every other request with `Ack`. Returns the objects listed
/// in `Have` requests.
fn step_to(n: &mut Node<u32>, now: u64, attached_to: &mut Vec<u32>) -> usize {
    n.handle_timeout(now);
    let mut listed = 0;
    while let Some(o) = n.poll_output() {
        if let Output::Request { id, to, request } = o {
            let response = match request {
                Request::Attach { .. } => {
                    attached_to.push(to.peer);
                    Response::Attached {
                        supernodes: Vec::new(),
                    }
                }
                Request::Have { added, .. } => {
                    listed += added.len();
                    Response::Ack
                }
                _ => Response::Ack,
            };
            n.handle_response(now, id, Ok(response));
        }
    }
    listed
}

#[test]
fn a_starting_leaf_takes_one_seeder_as_parent_not_all_of_them() {
    let seeders: Vec<Contact<u32>> = (1..=4u32)
        .map(|s| Contact::new(s, ip(9, s as u8), 4000))
        .collect();
    let own = Contact::new(10u32, ip(1, 10), 4000);
    let mut cfg = Config::new(own.clone(), Role::Leaf, seeders, 7);
    cfg.timing.maintenance_ms = 1_000;
    cfg.timing.heartbeat_ms = 10_000;
    let mut leaf = Node::new(cfg, Locality::new(Arc::new(AsMap::empty()), own.ip), 0);
    for b in 0..20u8 {
        leaf.object_stored(ObjectId([b; 32]));
    }
    // It knows no supernode: one seeder takes it, the others are left alone, also later while
    // it still has fewer parents than it wants.
    let mut attached_to = Vec::new();
    let mut listed = 0;
    for t in 0..60u64 {
        listed += step_to(&mut leaf, t * 1_000, &mut attached_to);
    }
    attached_to.sort();
    attached_to.dedup();
    assert_eq!(attached_to.len(), 1, "attached to seeders {attached_to:?}");
    assert_eq!(leaf.parents().len(), 1);
    assert_eq!(listed, 0, "holdings listed to a seeder parent");
}

#[test]
fn a_seeder_parent_gets_heartbeats_without_holdings() {
    let seeder = Contact::new(SEEDER, ip(9, 1), 4000);
    let own = Contact::new(10u32, ip(1, 10), 4000);
    let mut cfg = Config::new(own.clone(), Role::Leaf, vec![seeder], 7);
    cfg.timing.maintenance_ms = 1_000;
    cfg.timing.heartbeat_ms = 10_000;
    let mut leaf = Node::new(cfg, Locality::new(Arc::new(AsMap::empty()), own.ip), 0);
    for b in 0..50u8 {
        leaf.object_stored(ObjectId([b; 32]));
    }
    // It attaches to the only server it knows, and with no supernode parent asks it again
    // every half heartbeat who serves near it.
    let mut have = Vec::new();
    let mut attaches = 0;
    let mut heard_at = Vec::new();
    for t in 0..65u64 {
        let now = t * 1_000;
        if t == 30 {
            leaf.object_stored(ObjectId([77; 32]));
        }
        leaf.handle_timeout(now);
        while let Some(o) = leaf.poll_output() {
            if let Output::Request { id, request, .. } = o {
                heard_at.push(now);
                let response = match request {
                    Request::Attach { .. } => {
                        attaches += 1;
                        Response::Attached {
                            supernodes: Vec::new(),
                        }
                    }
                    Request::Have { added, removed } => {
                        have.push(added.len() + removed.len());
                        Response::Ack
                    }
                    _ => Response::Ack,
                };
                leaf.handle_response(now, id, Ok(response));
            }
        }
    }
    assert_eq!(leaf.parents().len(), 1);
    assert!(attaches >= 6, "asked the seeder again {attaches} times");
    // The seeder hears from its child at least once a heartbeat (a `Have`, or an `Attach`,
    // after which an empty `Have` is skipped), so the attachment stays alive.
    let gaps: Vec<u64> = heard_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= 12_000), "silent gaps {gaps:?}");
    // A `Have` to a seeder parent lists nothing: neither the 50 holdings nor the new copy (a
    // seeder hears of copies through `Holding` and `AddProvider`, which go to each object's
    // first seeder).
    assert!(have.iter().all(|n| *n == 0), "listed {have:?}");
}

/// A seeder that stops answering: after two failures in a row the leaf reports its copies to
/// each object's next seeder within about a minute, so that one seeder's outage does not leave
/// its objects without an index of holders (the next seeder would serve every byte instead).
#[test]
fn copies_are_reported_to_the_next_seeder_when_the_first_is_down() {
    const SECOND: u32 = 2;
    let first = Contact::new(SEEDER, ip(9, 1), 4000);
    let second = Contact::new(SECOND, ip(9, 2), 4000);
    let own = Contact::new(10u32, ip(1, 10), 4000);
    let seeders = vec![first.clone(), second.clone()];
    let mut leaf = Node::new(
        Config::new(own.clone(), Role::Leaf, seeders.clone(), 7),
        Locality::new(Arc::new(AsMap::empty()), own.ip),
        0,
    );
    // Objects whose rendezvous order puts the unanswering seeder first.
    let peers = [SEEDER, SECOND];
    let objects: Vec<ObjectId> = (0..40u8)
        .map(|b| ObjectId([b; 32]))
        .filter(|o| seeders_for(o, &peers, 2).first() == Some(&&SEEDER))
        .collect();
    assert!(
        objects.len() >= 5,
        "{} objects first at the seeder",
        objects.len()
    );
    for o in &objects {
        leaf.object_stored(*o);
    }
    // The first seeder answers nothing; the second takes the leaf and acknowledges the rest.
    let mut told_second = Vec::new();
    let mut failures = 0;
    let mut down_since = None;
    for t in 0..(20 * 60u64) {
        let now = t * 1_000;
        leaf.handle_timeout(now);
        while let Some(o) = leaf.poll_output() {
            let Output::Request { id, to, request } = o else {
                continue;
            };
            if to.peer == SEEDER {
                failures += 1;
                if failures == 2 {
                    down_since = Some(now);
                }
                leaf.handle_response(now, id, Err(RequestError::Unreachable));
                continue;
            }
            let response = match request {
                Request::Attach { .. } => Response::Attached {
                    supernodes: Vec::new(),
                },
                Request::Holding { objects, .. } => {
                    told_second.push((now, objects));
                    Response::Ack
                }
                _ => Response::Ack,
            };
            leaf.handle_response(now, id, Ok(response));
        }
    }
    let (at, listed) = told_second
        .first()
        .expect("the copies were never reported to the next seeder");
    assert!(
        objects.iter().all(|o| listed.contains(o)),
        "listed {} of {}",
        listed.len(),
        objects.len()
    );
    let since = down_since.expect("two requests to the first seeder failed");
    assert!(
        *at <= since + 61_000,
        "reported {} ms after it was down",
        at - since
    );
}
