//! State a long-running server keeps about others stays bounded: what a child reported goes
//! when the child does, a seeder indexes only its own objects, an evicted copy is no longer
//! named, and bans end.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use nearcast_asmap::AsMap;
use nearcast_proto::content::{Body, CHUNK_SIZE, Manifest};
use nearcast_proto::node::{BAN_MS, MAX_OBJECTS_PER_CHILD};
use nearcast_proto::{
    Config, Contact, Locality, Node, ObjectId, Output, Request, RequestError, Response, Role,
};

fn contact(p: u32) -> Contact<u32> {
    Contact::new(
        p,
        IpAddr::V4(Ipv4Addr::new(10, 0, (p >> 8) as u8, p as u8)),
        4000,
    )
}

fn id(i: u32) -> ObjectId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_le_bytes());
    b[31] = 0xAA;
    ObjectId(b)
}

fn server(role: Role) -> Node<u32> {
    let cfg = Config::new(contact(1), role, vec![contact(1)], 7);
    let mut n = Node::new(
        cfg,
        Locality::new(Arc::new(AsMap::empty()), contact(1).ip),
        0,
    );
    n.set_reachable(true);
    n
}

/// How many holders `peer` 3 is told of for `object`.
fn located(n: &mut Node<u32>, object: ObjectId, now: u64) -> usize {
    match n.handle_request(
        now,
        &3,
        Request::Locate {
            me: contact(3),
            object,
        },
    ) {
        Response::Located { holders } => holders.iter().filter(|h| h.contact.peer == 2).count(),
        other => panic!("{other:?}"),
    }
}

/// Runs `n`'s timers for `ms` from `from`, dropping what it sends.
fn idle(n: &mut Node<u32>, from: u64, ms: u64) -> u64 {
    let mut t = from;
    while t < from + ms {
        t += 5_000;
        n.handle_timeout(t);
        while n.poll_output().is_some() {}
    }
    t
}

fn attach(n: &mut Node<u32>) {
    let r = n.handle_request(
        0,
        &2,
        Request::Attach {
            me: contact(2),
            role: Role::Leaf,
        },
    );
    assert!(matches!(r, Response::Attached { .. }), "{r:?}");
}

#[test]
fn what_a_child_reported_goes_when_the_child_does() {
    let mut n = server(Role::Supernode);
    attach(&mut n);
    // More objects than a child's list records.
    let reported = MAX_OBJECTS_PER_CHILD as u32 + 4096;
    for (i, start) in (0..reported).step_by(4096).enumerate() {
        let added: Vec<ObjectId> = (start..(start + 4096).min(reported)).map(id).collect();
        let r = n.handle_request(
            1 + i as u64,
            &2,
            Request::Have {
                added,
                removed: vec![],
            },
        );
        assert!(matches!(r, Response::Ack), "{r:?}");
    }
    assert_eq!(located(&mut n, id(10), 100), 1);
    // The child goes silent and is dropped: none of its objects is named any more, including
    // those beyond what its list recorded (they were never indexed).
    let t = idle(&mut n, 100, 10 * 60_000);
    assert_eq!(n.children(), 0);
    assert_eq!(located(&mut n, id(10), t), 0);
    assert_eq!(located(&mut n, id(reported - 1), t), 0);
}

#[test]
fn a_seeder_indexes_only_its_own_objects_from_a_childs_report() {
    let mut n = server(Role::Seeder);
    n.object_stored(id(1));
    attach(&mut n);
    let r = n.handle_request(
        1,
        &2,
        Request::Have {
            added: vec![id(1), id(2)],
            removed: vec![],
        },
    );
    assert!(matches!(r, Response::Ack), "{r:?}");
    assert_eq!(located(&mut n, id(1), 2), 1);
    assert_eq!(located(&mut n, id(2), 3), 0, "a made-up id was indexed");
}

#[test]
fn a_supernode_no_longer_names_itself_for_a_copy_it_dropped() {
    // A supernode whose seeder is node 7 fetches a small object from it.
    let cfg = Config::new(contact(1), Role::Supernode, vec![contact(7)], 7);
    let mut n = Node::new(
        cfg,
        Locality::new(Arc::new(AsMap::empty()), contact(1).ip),
        0,
    );
    n.set_reachable(true);
    let m = Manifest {
        version: 1,
        size: 5,
        media_type: "text/plain".into(),
        chunk_size: CHUNK_SIZE,
        body: Body::Inline(b"hello".to_vec()),
    };
    let object = m.id();
    n.start_fetch(0, object);
    let mut now = 0;
    let mut done = false;
    while !done && now < 10_000 {
        while let Some(out) = n.poll_output() {
            match out {
                Output::Request { id, request, .. } => {
                    let answer = match request {
                        Request::GetManifest { .. } => Ok(Response::Manifest { bytes: m.encode() }),
                        Request::Locate { .. } => Ok(Response::Located { holders: vec![] }),
                        _ => Err(RequestError::Unreachable),
                    };
                    n.handle_response(now, id, answer);
                }
                Output::FetchDone { .. } => done = true,
                _ => {}
            }
        }
        now += 100;
        n.handle_timeout(now);
    }
    assert!(done, "the fetch did not complete");
    let names_itself = |n: &mut Node<u32>, now| match n.handle_request(
        now,
        &3,
        Request::Locate {
            me: contact(3),
            object,
        },
    ) {
        Response::Located { holders } => holders.iter().any(|h| h.contact.peer == 1),
        other => panic!("{other:?}"),
    };
    assert!(
        names_itself(&mut n, now),
        "a supernode indexes its own copy"
    );
    // Evicted: no longer named.
    n.object_removed(object);
    assert!(
        !names_itself(&mut n, now + 1),
        "named itself for an evicted copy"
    );
}

#[test]
fn bans_end() {
    use nearcast_proto::{ChunkOutcome, FetchId};
    let mut n = server(Role::Supernode);
    n.handle_chunk(10, FetchId(1), &9, 0, ChunkOutcome::Corrupt);
    assert!(n.is_banned(&9));
    let t = idle(&mut n, 10, BAN_MS / 2);
    assert!(n.is_banned(&9), "a ban ended early");
    idle(&mut n, t, BAN_MS / 2 + 60_000);
    assert!(!n.is_banned(&9), "a ban never ended");
}
