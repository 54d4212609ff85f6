//! Peers coming and going: initial placement and bandwidth, Weibull sessions and absences,
//! joins (a fresh core fed with the peer's cache) and leaves (in-flight work fails, the cache
//! stays for the next session), LRU caches and the live-holder counts, and the workload.

use std::net::IpAddr;

use nearcast_proto::{Config, Contact, Node, Role, Timing};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fxhash::mix;
use crate::net::Place;
use crate::queue::Class;
use crate::world::{Ev, NO_TIMER, Peer, T0, World};

/// Port of a dialable peer; NAT'd peers advertise 0.
const PORT: u16 = 4001;

/// A uniform number in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Inverse CDF of a Weibull distribution, ms.
fn weibull_ms(u: f64, shape: f64, scale_min: f64) -> u64 {
    let x = scale_min * (-(1.0 - u).max(1e-12).ln()).powf(1.0 / shape);
    (x * 60_000.0).clamp(1_000.0, 1e12) as u64
}

/// Γ(x) by the Lanczos approximation (x > 0).
fn gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x));
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
}

impl World {
    /// Creates every peer and schedules the initial joins and churn.
    pub fn populate(&mut self, places: &[Place]) {
        let sc = self.sc.clone();
        let s = self.n_seeders;
        self.seeder_contacts = (0..s)
            .map(|i| Contact::new(i, places[i as usize].ip_addr(), PORT))
            .collect();
        let mut init_rng = ChaCha8Rng::seed_from_u64(mix(&[self.seed, 6]));
        let log_uniform = |u: f64, r: [f64; 2]| (r[0].ln() + (r[1].ln() - r[0].ln()) * u).exp();
        let c = &sc.churn;
        let mean_on = c.session_scale_min * gamma(1.0 + 1.0 / c.session_shape);
        let mean_off = c.offline_scale_min * gamma(1.0 + 1.0 / c.offline_shape);
        let p_on = mean_on / (mean_on + mean_off);
        let maint = sc.protocol.maintenance_ms.max(1);
        // Initial peers become eligible for promotion one by one over the first minutes (up to
        // half the warm-up), as in a network that has been running, not all at the same instant.
        let promote_ms = (sc.protocol.promote_after_min * 60_000.0) as u64;
        let stagger_ms = (sc.warmup_min * 30_000.0).min(300_000.0);
        let initial_age =
            |elapsed: u64, u: f64| elapsed.min(promote_ms.saturating_sub((u * stagger_ms) as u64));
        for (i, place) in places.iter().enumerate() {
            let i = i as u32;
            let seeder = i < s;
            let h = |k: u64| unit(mix(&[self.seed, u64::from(i), k]));
            let nat = !seeder && h(1) < sc.network.nat_share;
            let always_on = seeder || !c.enabled || h(2) < c.always_on;
            let (up, down) = if seeder {
                (sc.network.seeder_up_mbit, sc.network.seeder_up_mbit)
            } else {
                (
                    log_uniform(h(3), sc.network.up_mbit),
                    log_uniform(h(4), sc.network.down_mbit),
                )
            };
            let mut cache = Vec::new();
            let mut cache_bytes = 0;
            if !seeder {
                for _ in 0..sc.workload.initial_cache {
                    let o = self.catalogue.sample(&mut init_rng);
                    if !cache.contains(&o) {
                        let size = u64::from(self.catalogue.get(o).size);
                        if cache_bytes + size <= self.cache_budget {
                            cache.push(o);
                            cache_bytes += size;
                        }
                    }
                }
            }
            self.peers.push(Peer {
                node: None,
                place: *place,
                up: (up * 125.0) as f32,
                down: (down * 125.0) as f32,
                active_up: 0,
                active_down: 0,
                seeder,
                nat,
                always_on,
                corrupt: false,
                refusing: false,
                blocked: false,
                want_online: false,
                supernode: false,
                online_pos: u32::MAX,
                sess: 0,
                churn_count: 0,
                epoch: 0,
                timer_at: NO_TIMER,
                fired_at: 0,
                cache,
                cache_bytes,
                fetches: Vec::new(),
            });
            if seeder {
                self.peers[i as usize].want_online = true;
                self.join(i, 0);
                continue;
            }
            // Stagger the initial joins over one maintenance period.
            let join_at = T0 + (h(5) * maint as f64) as u64;
            if always_on {
                self.peers[i as usize].want_online = true;
                self.join_later(i, join_at, initial_age(u64::MAX, h(11)));
                continue;
            }
            if h(6) < p_on {
                let len = weibull_ms(h(7), c.session_shape, c.session_scale_min);
                let elapsed = (h(8) * len as f64) as u64;
                self.peers[i as usize].want_online = true;
                self.join_later(i, join_at, initial_age(elapsed, h(11)));
                self.q.push(
                    join_at + (len - elapsed).max(1),
                    Class::Churn,
                    Ev::Churn { peer: i },
                );
            } else {
                let off =
                    (weibull_ms(h(9), c.offline_shape, c.offline_scale_min) as f64 * h(10)) as u64;
                self.q
                    .push(T0 + off.max(1), Class::Churn, Ev::Churn { peer: i });
            }
        }
    }

    /// Initial joins: a peer that has been up `age_ms` already (eligible for promotion).
    fn join_later(&mut self, peer: u32, at: u64, age_ms: u64) {
        self.pending_age.insert(peer, age_ms);
        self.q.push(at, Class::Churn, Ev::Unblock { peer });
    }

    /// The churn schedule flips a peer between online and offline.
    pub fn on_churn(&mut self, peer: u32) {
        let now = self.q.now;
        let c = self.sc.churn.clone();
        let p = &mut self.peers[peer as usize];
        p.churn_count += 1;
        let k = p.churn_count;
        p.want_online = !p.want_online;
        let u = unit(mix(&[self.seed, u64::from(peer), 100 + u64::from(k)]));
        let next = if p.want_online {
            weibull_ms(u, c.session_shape, c.session_scale_min)
        } else {
            weibull_ms(u, c.offline_shape, c.offline_scale_min)
        };
        self.q.push(now + next, Class::Churn, Ev::Churn { peer });
        let p = &self.peers[peer as usize];
        if p.blocked {
            return;
        }
        if p.want_online && !p.online() {
            self.join(peer, 0);
        } else if !p.want_online && p.online() {
            self.leave(peer);
        }
    }

    /// A fault (or the initial stagger) is over for this peer.
    pub fn unblock(&mut self, peer: u32) {
        let p = &mut self.peers[peer as usize];
        p.blocked = false;
        if p.want_online && !p.online() {
            let age = self.pending_age.remove(&peer).unwrap_or(0);
            self.join(peer, age);
        }
    }

    /// Takes a peer down for a fault.
    pub fn block(&mut self, peer: u32) {
        self.peers[peer as usize].blocked = true;
        if self.peers[peer as usize].online() {
            self.leave(peer);
        }
    }

    fn make_node(&self, peer: u32, now: u64, age_ms: u64) -> Node<u32> {
        let pr = &self.sc.protocol;
        let p = &self.peers[peer as usize];
        let ip: IpAddr = p.place.ip_addr();
        let role = if p.seeder { Role::Seeder } else { Role::Leaf };
        let port = if p.nat { 0 } else { PORT };
        let own = Contact::new(peer, ip, port);
        let seed = mix(&[self.seed, u64::from(peer), u64::from(p.sess), 77]);
        let mut cfg = Config::new(own, role, self.seeder_contacts.clone(), seed);
        cfg.timing = Timing {
            hedge_ms: pr.hedge_ms,
            maintenance_ms: pr.maintenance_ms,
            heartbeat_ms: pr.heartbeat_ms,
            promote_after_ms: (pr.promote_after_min * 60_000.0) as u64,
            ..Timing::default()
        };
        cfg.replication = pr.replication.max(1);
        cfg.defences = pr.defences;
        cfg.strategy = self.strategy;
        cfg.may_promote = !p.nat;
        if p.seeder {
            cfg.upload_bytes_per_s = f64::from(p.up) * 1000.0;
            cfg.control_per_s = pr.seeder_control_per_s;
            cfg.max_children = pr.seeder_max_children;
        } else {
            cfg.upload_bytes_per_s = f64::from(p.up) * 1000.0 * pr.upload_share;
            cfg.control_per_s = pr.control_per_s;
            cfg.max_children = pr.max_children;
        }
        let locality = self.topo.locality.for_ip(ip);
        let mut node = Node::new(cfg, locality, now.saturating_sub(age_ms));
        node.set_reachable(!p.nat);
        node
    }

    /// Brings a peer online with a fresh core that knows the peer's store.
    pub fn join(&mut self, peer: u32, age_ms: u64) {
        let now = self.q.now;
        let mut node = self.make_node(peer, now, age_ms);
        let seeder = self.peers[peer as usize].seeder;
        if seeder {
            for o in &self.catalogue.objects {
                node.object_stored(o.id);
            }
        } else {
            for &o in &self.peers[peer as usize].cache {
                node.object_stored(self.catalogue.get(o).id);
            }
        }
        let p = &mut self.peers[peer as usize];
        p.node = Some(Box::new(node));
        p.timer_at = NO_TIMER;
        if !seeder {
            p.online_pos = self.online.len() as u32;
            self.online.push(peer);
            let cache = self.peers[peer as usize].cache.clone();
            for o in cache {
                self.holder_delta(peer, o, 1);
            }
        }
        self.dirty.push(peer);
    }

    /// Takes a peer offline: its core is dropped, its fetches abort, its cache stays.
    pub fn leave(&mut self, peer: u32) {
        let Some(node) = self.peers[peer as usize].node.take() else {
            return;
        };
        self.dht_departed.add(node.stats());
        drop(node);
        self.abort_fetches(peer);
        let p = &mut self.peers[peer as usize];
        if p.supernode {
            p.supernode = false;
            self.supernodes -= 1;
        }
        p.sess = p.sess.wrapping_add(1);
        p.epoch = p.epoch.wrapping_add(1);
        p.timer_at = NO_TIMER;
        p.active_up = 0;
        p.active_down = 0;
        if !p.seeder {
            let pos = p.online_pos as usize;
            p.online_pos = u32::MAX;
            self.online.swap_remove(pos);
            if let Some(&moved) = self.online.get(pos) {
                self.peers[moved as usize].online_pos = pos as u32;
            }
            let cache = self.peers[peer as usize].cache.clone();
            for o in cache {
                self.holder_delta(peer, o, -1);
            }
        }
    }

    /// Live reachable holder counts (per object and per object and AS).
    fn holder_delta(&mut self, peer: u32, object: u32, d: i32) {
        let p = &self.peers[peer as usize];
        if p.nat || p.seeder {
            return;
        }
        let as_idx = p.place.as_idx;
        let o = self.catalogue.get_mut(object);
        o.holders = o.holders.saturating_add_signed(d);
        let list = &mut o.holders_by_as;
        match list.binary_search_by_key(&as_idx, |&(a, _)| a) {
            Ok(i) => {
                list[i].1 = list[i].1.saturating_add_signed(d);
                if list[i].1 == 0 {
                    list.remove(i);
                }
            }
            Err(i) if d > 0 => list.insert(i, (as_idx, d as u32)),
            Err(_) => {}
        }
    }

    /// Stores a fetched object in the peer's cache, evicting the least recently used.
    pub fn cache_insert(&mut self, peer: u32, object: u32) {
        if self.peers[peer as usize].seeder {
            return;
        }
        let size = u64::from(self.catalogue.get(object).size);
        let p = &mut self.peers[peer as usize];
        if let Some(pos) = p.cache.iter().position(|o| *o == object) {
            p.cache.remove(pos);
            p.cache.push(object);
            return;
        }
        p.cache.push(object);
        p.cache_bytes += size;
        let online = p.online();
        if online {
            self.holder_delta(peer, object, 1);
        }
        loop {
            let p = &mut self.peers[peer as usize];
            if p.cache_bytes <= self.cache_budget || p.cache.len() <= 1 {
                break;
            }
            let old = p.cache.remove(0);
            let old_size = u64::from(self.catalogue.get(old).size);
            p.cache_bytes -= old_size;
            let id = self.catalogue.get(old).id;
            if let Some(node) = p.node.as_mut() {
                node.object_removed(id);
            }
            if online {
                self.holder_delta(peer, old, -1);
            }
        }
    }

    /// One request of the workload, then the next arrival.
    pub fn on_workload(&mut self) {
        let now = self.q.now;
        let w = &self.sc.workload;
        let hour = w.start_hour + (now - T0) as f64 / 3_600_000.0;
        let diurnal = 1.0 + w.diurnal * (2.0 * std::f64::consts::PI * (hour - 12.0) / 24.0).sin();
        let rate_per_ms = self.online.len() as f64 * w.requests_per_min / 60_000.0 * diurnal;
        if !self.online.is_empty() && w.requests_per_min > 0.0 {
            let i = self.work_rng.random_range(0..self.online.len());
            let peer = self.online[i];
            let object = self.catalogue.sample(&mut self.work_rng);
            if self.peers[peer as usize].cache.contains(&object) {
                self.cache_insert(peer, object);
            }
            self.request(peer, object);
        }
        let u: f64 = self.work_rng.random();
        let dt = if rate_per_ms > 0.0 {
            -(1.0 - u).ln() / rate_per_ms
        } else {
            1000.0
        };
        self.next_request_f = self.next_request_f.max(now as f64) + dt;
        self.q
            .push(self.next_request_f as u64, Class::Workload, Ev::Request);
    }

    /// A new object is published: seeders store it, and it enters the ranking.
    pub fn on_new_object(&mut self) {
        let now = self.q.now;
        let w = &self.sc.workload;
        let per_min = w.new_per_min_per_1k * f64::from(self.sc.peers) / 1000.0;
        if per_min <= 0.0 {
            return;
        }
        let n = self.catalogue.arrive(&mut self.work_rng);
        let id = self.catalogue.get(n).id;
        for s in 0..self.n_seeders {
            if let Some(node) = self.peers[s as usize].node.as_mut() {
                node.object_stored(id);
                self.dirty.push(s);
            }
        }
        let u: f64 = self.work_rng.random();
        let dt = (-(1.0 - u).ln() / per_min * 60_000.0).max(1.0);
        self.q.push(now + dt as u64, Class::Workload, Ev::NewObject);
    }
}
