//! Fault injection: seeder outages, mass restarts, supernode crash waves, loss of the largest
//! AS, a partition that heals, refusing supernodes, corrupt peers and flash crowds.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::queue::Class;
use crate::scenario::FaultKind;
use crate::world::{Ev, World};

impl World {
    /// Current supernodes, in index order.
    fn current_supernodes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .online
            .iter()
            .copied()
            .filter(|&p| self.peers[p as usize].supernode)
            .collect();
        v.sort_unstable();
        v
    }

    /// A deterministic random share of `list`.
    fn pick(&mut self, mut list: Vec<u32>, share: f64) -> Vec<u32> {
        list.sort_unstable();
        list.shuffle(&mut self.fault_rng);
        let n = ((list.len() as f64) * share.clamp(0.0, 1.0)).round() as usize;
        list.truncate(n);
        list
    }

    pub fn fault_start(&mut self, i: usize) {
        let now = self.q.now;
        let kind = self.sc.faults[i].kind.clone();
        let affected: Vec<u32> = match kind {
            FaultKind::SeederOutage { count } => {
                let n = if count == 0 {
                    self.n_seeders
                } else {
                    count.min(self.n_seeders)
                };
                let list: Vec<u32> = (0..n).collect();
                for &s in &list {
                    self.block(s);
                }
                list
            }
            FaultKind::MassRestart { share, spread_min } => {
                let list = self.pick(self.online.clone(), share);
                let spread = (spread_min * 60_000.0).max(1.0);
                for &p in &list {
                    self.block(p);
                    let back = now + (self.fault_rng.random::<f64>() * spread) as u64;
                    self.q.push(back, Class::Fault, Ev::Unblock { peer: p });
                }
                Vec::new()
            }
            FaultKind::SupernodeCrash { share } => {
                let sn = self.current_supernodes();
                let list = self.pick(sn, share);
                for &p in &list {
                    self.block(p);
                }
                list
            }
            FaultKind::LargestAsLoss => {
                let a = self.topo.largest_as();
                let list: Vec<u32> = (self.n_seeders..self.peers.len() as u32)
                    .filter(|&p| self.peers[p as usize].place.as_idx == a)
                    .collect();
                for &p in &list {
                    self.block(p);
                }
                list
            }
            FaultKind::Partition { share } => {
                // ASes in random order until they hold `share` of the peers.
                let mut ases: Vec<u32> = (0..self.topo.asns.len() as u32)
                    .filter(|a| !self.topo.seeder_ases.contains(a))
                    .collect();
                ases.shuffle(&mut self.fault_rng);
                let total = f64::from(self.sc.peers);
                let mut region = vec![false; self.topo.asns.len()];
                let mut held = 0.0;
                for a in ases {
                    if held >= share * total {
                        break;
                    }
                    region[a as usize] = true;
                    held += f64::from(self.topo.as_peers[a as usize]);
                }
                self.faults.partition = Some(region);
                Vec::new()
            }
            FaultKind::RefusingSupernodes { share } => {
                let sn = self.current_supernodes();
                let list = self.pick(sn, share);
                for &p in &list {
                    self.peers[p as usize].refusing = true;
                }
                list
            }
            FaultKind::CorruptPeers { share } => {
                let all: Vec<u32> = (self.n_seeders..self.peers.len() as u32).collect();
                let list = self.pick(all, share);
                for &p in &list {
                    self.peers[p as usize].corrupt = true;
                }
                list
            }
            FaultKind::FlashCrowd { share, size } => {
                let n = self
                    .catalogue
                    .create(&mut self.work_rng, Some(size.max(300)));
                let id = self.catalogue.get(n).id;
                for s in 0..self.n_seeders {
                    if let Some(node) = self.peers[s as usize].node.as_mut() {
                        node.object_stored(id);
                        self.dirty.push(s);
                    }
                }
                self.catalogue.flash = Some((n, share));
                Vec::new()
            }
        };
        self.faults.affected[i] = affected;
    }

    pub fn fault_end(&mut self, i: usize) {
        let kind = self.sc.faults[i].kind.clone();
        let list = std::mem::take(&mut self.faults.affected[i]);
        match kind {
            FaultKind::SeederOutage { .. }
            | FaultKind::SupernodeCrash { .. }
            | FaultKind::LargestAsLoss => {
                for p in list {
                    self.unblock(p);
                }
            }
            FaultKind::MassRestart { .. } => {}
            FaultKind::Partition { .. } => self.faults.partition = None,
            FaultKind::RefusingSupernodes { .. } => {
                for p in list {
                    self.peers[p as usize].refusing = false;
                }
            }
            FaultKind::CorruptPeers { .. } => {
                for p in list {
                    self.peers[p as usize].corrupt = false;
                }
            }
            FaultKind::FlashCrowd { .. } => self.catalogue.flash = None,
        }
    }
}
