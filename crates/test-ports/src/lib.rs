//! Free loopback ports for the listeners tests start (Envoy inbounds and
//! outbounds, test services), shared by every test crate so that test
//! processes running at once never hand out the same port.

/// A free port on 127.0.0.1 for a listener. It is drawn at random below the
/// kernel's range for outgoing connections (32768 and up on Linux), so no
/// connection of this or another test takes it before the listener binds
/// it; the same process never gets it twice.
///
/// The port is also reserved for the rest of the process's life against
/// every other test process that draws ports here (nextest runs each test
/// in a process of its own, two or more at once). A free port alone is not
/// enough: two processes may draw the same one before either Envoy binds
/// it, and Envoy binds its listeners with `SO_REUSEPORT`, so both Envoys
/// then listen on it and the kernel hands each new connection to one of
/// them at random. A test would get half of its connections answered by
/// another test's proxy (an mTLS listener closing them without a word, for
/// one), with nothing in its own proxy's log.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static RESERVED: std::sync::Mutex<Vec<PortReservation>> = std::sync::Mutex::new(Vec::new());
    let (low, high) = (20_000u64, 32_768u64);
    for _ in 0..1000 {
        // A fresh RandomState is randomly keyed: a random number without a crate.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = u16::try_from(low + random % (high - low)).expect("below 32768");
        // Reserved first, so no other process can draw the port between
        // the check that it is free and its reservation.
        let Some(reservation) = reserve(port) else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            RESERVED.lock().unwrap().push(reservation);
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
}

/// What holds a port's reservation: dropped only when the process exits.
#[cfg(target_os = "linux")]
type PortReservation = std::os::unix::net::UnixListener;
#[cfg(not(target_os = "linux"))]
type PortReservation = ();

/// Reserves `port` among the processes of this network namespace: a Unix
/// socket in the abstract namespace named after it, which one process at a
/// time can bind (this one too: a port is never handed out twice) and which
/// goes away with its process, leaving no file behind. None when taken.
#[cfg(target_os = "linux")]
fn reserve(port: u16) -> Option<PortReservation> {
    use std::os::linux::net::SocketAddrExt;
    let name = std::os::unix::net::SocketAddr::from_abstract_name(format!("kodiak-test-port-{port}")).ok()?;
    std::os::unix::net::UnixListener::bind_addr(&name).ok()
}

/// Elsewhere only this process's own ports are known.
#[cfg(not(target_os = "linux"))]
fn reserve(port: u16) -> Option<PortReservation> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    (!given.contains(&port)).then(|| given.push(port))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_port_is_handed_out_once_and_stays_reserved() {
        let port = free_port();
        assert!((20_000..32_768).contains(&port), "{port}");
        assert!(reserve(port).is_none(), "port {port} stays reserved while the process lives");
        let more: BTreeSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(more.len(), 50, "no port is handed out twice");
        assert!(!more.contains(&port));
    }
}
