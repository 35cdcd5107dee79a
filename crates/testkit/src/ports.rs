//! Free ports that stay free until the child binds them.
//!
//! The old way, `bind(127.0.0.1:0)` then drop the listener and hand the port to a child, leaves a window in which
//! the kernel may hand the same port to any other `bind(0)` (an in-process test server, the next probe) and the
//! child fails to bind, or worse, a readiness probe reaches the other listener. Ports below the kernel's
//! ephemeral range (`net.ipv4.ip_local_port_range`, 32768 and up here) are never handed out by `bind(0)` or used
//! as the source port of a connection, so only an explicit bind can take them; every explicit bind in our
//! tooling goes through here, where a port is reserved for the life of the process: in a set shared by its
//! threads, and by a lock file other processes (parallel test binaries, nextest, a bench) respect.

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Lowest port handed out; below it are well-known and registered services' usual ports.
const FLOOR: u16 = 10_000;
/// A Redis/Valkey cluster node also listens on its port + 10000 (the cluster bus).
pub const BUS_OFFSET: u16 = 10_000;

struct Reserved {
    ports: HashSet<u16>,
    /// Held open for the life of the process: the lock is what other processes see.
    locks: Vec<File>,
}

static RESERVED: Mutex<Option<Reserved>> = Mutex::new(None);

/// A port on 127.0.0.1 that nothing listens on and that no other caller of this module, in this process or
/// another, will get.
pub fn free_port() -> u16 {
    pick(|port| vec![port], ephemeral_floor())
}

/// A port for a cluster node: it and its bus port (`port + 10000`) are both free, reserved and below the
/// ephemeral range (a node whose bus port would pass 65535 exits at start).
pub fn free_port_with_bus() -> u16 {
    pick(
        |port| vec![port, port + BUS_OFFSET],
        ephemeral_floor().saturating_sub(BUS_OFFSET),
    )
}

fn pick(group: impl Fn(u16) -> Vec<u16>, below: u16) -> u16 {
    assert!(
        below > FLOOR + 100,
        "the ephemeral port range starts at {below}: no room below it for test servers"
    );
    let mut guard = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    let reserved = guard.get_or_insert_with(|| Reserved {
        ports: HashSet::new(),
        locks: Vec::new(),
    });
    let mut state = seed();
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = FLOOR + (state % u64::from(below - FLOOR)) as u16;
        let ports = group(port);
        if ports.iter().any(|p| reserved.ports.contains(p)) {
            continue;
        }
        let Some(locks) = ports.iter().map(|p| lock(*p)).collect::<Option<Vec<_>>>() else {
            continue;
        };
        // Nothing else may listen there either (a system service, a server some other tool started).
        if !ports
            .iter()
            .all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).is_ok())
        {
            continue;
        }
        reserved.ports.extend(&ports);
        reserved.locks.extend(locks);
        return port;
    }
    panic!("no free port between {FLOOR} and {below} after 20000 tries");
}

/// An exclusive lock on the port's file; `None` when another process holds it.
fn lock(port: u16) -> Option<File> {
    let dir = std::env::temp_dir().join("s3kv-testkit-ports");
    std::fs::create_dir_all(&dir).ok()?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// Where `bind(0)` starts handing out ports; 32768 (Linux's default) where it cannot be read.
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let floor = ephemeral_floor();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        assert!(
            ports.iter().all(|p| (FLOOR..floor).contains(p)),
            "{ports:?}"
        );
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), ports.len());
    }

    #[test]
    fn a_node_port_and_its_bus_port_are_both_free_and_below_the_range() {
        let floor = ephemeral_floor();
        for _ in 0..50 {
            let port = free_port_with_bus();
            assert!(port + BUS_OFFSET < floor, "{port}");
            assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port + BUS_OFFSET)).is_ok());
        }
    }

    #[test]
    fn another_process_cannot_take_a_reserved_port() {
        let port = free_port();
        // The lock file is held by this process; a second open file description cannot lock it.
        assert!(lock(port).is_none());
    }
}
