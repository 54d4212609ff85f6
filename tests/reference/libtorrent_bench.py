#!/usr/bin/env python3
"""libtorrent 2.0 in the setups of nearcast's swarm and pair benchmarks, on loopback.

The issue's reference figures (libtorrent: swarm ~3.2 s, pair ~340 MB/s) were measured on this
kind of machine at some other time; these machines are noisy, so this script measures libtorrent
again, in the same run as `nearcast-bench`, for a ratio rather than a guess:

- swarm: one seeder (127.9.0.1) and N peers (127.1.x.y), one object of M MiB that every peer asks
  for at once; wall time until every peer holds it verified (libtorrent checks each piece's hash
  before it counts as held), the CPU of all processes until then, and the seeder's upload in
  copies;
- pair: a seeder and one peer, a 256 MiB object: verified-and-stored throughput.

One process per libtorrent session (as nearcast runs one daemon per peer), each bound to its own
loopback address; TCP only (uTP holds loopback transfers to a few MB/s); no DHT, LSD, UPnP or
NAT-PMP: peers are told every other address at the start. Settings: libtorrent's own
`high_performance_seed` preset (or its defaults with `--settings default`).
Pieces are 256 KiB, nearcast's chunk size. Torrent kind `hybrid` (libtorrent 2.0's default,
SHA-1 and SHA-256 both checked), `v1` or `v2`.

    pip install libtorrent==2.0.11
    python3 tests/reference/libtorrent_bench.py [--only swarm,pair] [--peers 16] [--swarm-mib 64]
        [--pair-mib 256] [--torrent hybrid|v1|v2] [--runs 1]

Only loopback addresses are used; every wait is bounded (300 s).
"""

import argparse
import hashlib
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time

PIECE = 256 * 1024
DEADLINE_S = 300.0
SEEDER_IP = "127.9.0.1"


def peer_ip(i):
    return f"127.1.{i // 8}.{i % 8 + 1}"


def session(lt, ip, preset):
    settings = lt.high_performance_seed() if preset == "high_performance_seed" else {}
    settings.update(
        {
            "listen_interfaces": f"{ip}:0",
            "outgoing_interfaces": ip,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            # uTP's delay-based congestion control holds a loopback transfer to a few MB/s;
            # TCP is what the figures were measured over.
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "alert_mask": lt.alert_category.status | lt.alert_category.error,
        }
    )
    return lt.session(settings)


def child(role, ip, torrent_path, save_path, preset, conn):
    """One libtorrent session: reports its port, waits for `go`, then downloads (or seeds)."""
    import libtorrent as lt

    ses = session(lt, ip, preset)
    ti = lt.torrent_info(torrent_path)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = save_path
    handle = None
    if role == "seeder":
        atp.flags |= lt.torrent_flags.seed_mode
        handle = ses.add_torrent(atp)
    conn.send(("ready", ses.listen_port(), os.getpid()))
    msg = conn.recv()
    assert msg[0] == "go"
    if handle is None:
        handle = ses.add_torrent(atp)
    for addr in msg[1]:
        if addr != (ip, ses.listen_port()):
            handle.connect_peer(addr)
    done = None
    end = time.monotonic() + DEADLINE_S
    while done is None and time.monotonic() < end:
        if handle.status().is_seeding:
            done = time.monotonic()
            break
        ses.wait_for_alert(20)
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_error_alert):
                print(f"{ip}: {a.message()}", file=sys.stderr)
    conn.send(("done", done))
    # Keep serving until every peer is done.
    msg = conn.recv()
    assert msg[0] == "stop"
    st = handle.status()
    conn.send(("stats", st.total_payload_upload, st.total_payload_download))
    conn.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def make_torrent(lt, work, size, kind):
    """Writes `size` random bytes and a torrent of them; returns (torrent path, sha256)."""
    seed_dir = os.path.join(work, "seeder")
    os.makedirs(seed_dir)
    path = os.path.join(seed_dir, "object.bin")
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    flags = {"hybrid": 0, "v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only}[kind]
    ct = lt.create_torrent(fs, PIECE, flags=flags)
    lt.set_piece_hashes(ct, seed_dir)
    torrent_path = os.path.join(work, "object.torrent")
    with open(torrent_path, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    return torrent_path, seed_dir, digest.hexdigest()


def run(peers, size, kind, preset):
    """One seeder and `peers` peers; returns (wall s, CPU s, seeder upload in copies, done times)."""
    import libtorrent as lt

    work = tempfile.mkdtemp(prefix="lt-bench-")
    try:
        torrent_path, seed_dir, want = make_torrent(lt, work, size, kind)
        ctx = mp.get_context("spawn")
        procs = []
        specs = [("seeder", SEEDER_IP, seed_dir)]
        for i in range(peers):
            d = os.path.join(work, f"p{i:02}")
            os.makedirs(d)
            specs.append(("peer", peer_ip(i), d))
        for role, ip, d in specs:
            parent, kid = ctx.Pipe()
            p = ctx.Process(target=child, args=(role, ip, torrent_path, d, preset, kid), daemon=True)
            p.start()
            procs.append((p, parent, ip))
        addrs, pids = [], []
        for p, conn, ip in procs:
            if not conn.poll(60):
                raise RuntimeError(f"{ip}: no answer")
            _, port, pid = conn.recv()
            addrs.append((ip, port))
            pids.append(pid)
        cpu0 = sum(cpu_ticks(pid) for pid in pids)
        start = time.monotonic()
        for _, conn, _ in procs:
            conn.send(("go", addrs))
        done = []
        for p, conn, ip in procs:
            if not conn.poll(DEADLINE_S + 10):
                raise RuntimeError(f"{ip}: did not finish")
            _, t = conn.recv()
            if t is None:
                raise RuntimeError(f"{ip}: did not finish in {DEADLINE_S} s")
            if ip != SEEDER_IP:
                done.append(t - start)
        cpu = (sum(cpu_ticks(pid) for pid in pids) - cpu0) / os.sysconf("SC_CLK_TCK")
        uploaded = 0
        for p, conn, ip in procs:
            conn.send(("stop",))
            _, up, _down = conn.recv()
            if ip == SEEDER_IP:
                uploaded = up
            p.join(10)
        # Untimed: every peer's copy has the right bytes.
        for i in range(peers):
            got = hashlib.sha256()
            with open(os.path.join(work, f"p{i:02}", "object.bin"), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    got.update(block)
            if got.hexdigest() != want:
                raise RuntimeError(f"p{i:02}: wrong bytes")
        done.sort()
        return done[-1], cpu, uploaded / size, done
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="swarm,pair")
    ap.add_argument("--peers", type=int, default=16)
    ap.add_argument("--swarm-mib", type=int, default=64)
    ap.add_argument("--pair-mib", type=int, default=256)
    ap.add_argument("--torrent", choices=["hybrid", "v1", "v2"], default="hybrid")
    ap.add_argument(
        "--settings", choices=["high_performance_seed", "default"], default="high_performance_seed"
    )
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    import libtorrent as lt

    print(
        f"libtorrent {lt.__version__}, {a.torrent} torrent, {PIECE // 1024} KiB pieces, "
        f"{a.settings} settings"
    )
    for _ in range(a.runs):
        if "swarm" in a.only:
            size = a.swarm_mib << 20
            wall, cpu, copies, done = run(a.peers, size, a.torrent, a.settings)
            print(
                f"   swarm: {a.peers} peers, {a.swarm_mib} MiB, all at once: {wall:.2f} s "
                f"(first {done[0]:.2f} s, median {done[len(done) // 2]:.2f} s); "
                f"CPU {cpu:.2f} s; seeder upload {copies:.2f} copies"
            )
        if "pair" in a.only:
            size = a.pair_mib << 20
            wall, cpu, _, _ = run(1, size, a.torrent, a.settings)
            print(
                f"   pair: {a.pair_mib} MiB from one source, verified and stored: {wall:.2f} s = "
                f"{size / wall / 1e6:.0f} MB/s; CPU {cpu:.2f} s"
            )


if __name__ == "__main__":
    main()
