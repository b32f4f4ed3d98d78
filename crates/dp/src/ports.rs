//! Before Envoy starts: can every port the Dataplane asks for be bound
//! now? Envoy would otherwise start and then reject the listener from the
//! control plane, an error that only shows in its log and in a NACK. A
//! second sidecar for the same ports is the usual cause, and Envoy's
//! SO_REUSEPORT listeners would even let two of them share a port and split
//! its traffic; a plain bind (no SO_REUSEPORT) refuses.
//!
//! With `--dataplane-file` the check runs before `POST /bootstrap`, so a
//! sidecar that cannot start never registers its Dataplane; with `--name`
//! the Dataplane is known only from the control plane's answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use anyhow::bail;
use serde_json::Value;

/// Outbounds listen on loopback unless they say otherwise (Kuma's default).
const DEFAULT_OUTBOUND_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One address Envoy will listen on, and what in the Dataplane asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub what: String,
    pub address: SocketAddr,
}

/// The inbound and outbound addresses of a Dataplane document (the local
/// file's, or the one the control plane returned), every entry even when
/// two ask for the same address. Port 0 (kernel-chosen) needs no check; an
/// address that is not an IP (a hostname) is left for Envoy to judge.
pub fn dataplane_listens(dataplane: &Value) -> Vec<Listen> {
    let networking = &dataplane["networking"];
    let dataplane_address = networking["address"].as_str().and_then(|a| a.parse::<IpAddr>().ok());
    let mut out = Vec::new();
    for (i, inbound) in list(networking, "inbound").iter().enumerate() {
        let ip = match inbound["address"].as_str() {
            Some(address) => address.parse().ok(),
            None => dataplane_address,
        };
        let service =
            inbound["tags"]["kuma.io/service"].as_str().map(|s| format!(" (service {s})")).unwrap_or_default();
        out.extend(listen(format!("inbound networking.inbound[{i}]{service}"), ip, &inbound["port"]));
    }
    for (i, outbound) in list(networking, "outbound").iter().enumerate() {
        let ip = match outbound["address"].as_str() {
            Some(address) => address.parse().ok(),
            None => Some(DEFAULT_OUTBOUND_ADDRESS),
        };
        let target = outbound["tags"]["kuma.io/service"]
            .as_str()
            .or_else(|| outbound["backendRef"]["name"].as_str())
            .map(|s| format!(" (to {s})"))
            .unwrap_or_default();
        out.extend(listen(format!("outbound networking.outbound[{i}]{target}"), ip, &outbound["port"]));
    }
    out
}

/// Envoy's admin address as a bootstrap gives it (none when kernel-chosen).
pub fn bootstrap_admin(bootstrap: &Value) -> Option<Listen> {
    let admin = &bootstrap["admin"]["address"]["socket_address"];
    listen("Envoy's admin API".to_owned(), admin["address"].as_str().and_then(|a| a.parse().ok()), &admin["port_value"])
}

/// Envoy's admin API on 127.0.0.1:`port`, where the bootstrap puts it
/// (none when the port is 0).
pub fn admin_listen(port: u16) -> Option<Listen> {
    listen("Envoy's admin API".to_owned(), Some(Ipv4Addr::LOCALHOST.into()), &port.into())
}

fn listen(what: String, ip: Option<IpAddr>, port: &Value) -> Option<Listen> {
    let port = port.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0)?;
    Some(Listen { what, address: SocketAddr::new(ip?, port) })
}

fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value[field].as_array().map_or(&[], Vec::as_slice)
}

/// Reports every entry that asks for an address an earlier entry already
/// asked for (one Envoy listener cannot be two inbounds, or an inbound and
/// an outbound), then binds and releases each distinct address once; every
/// one that fails is reported.
pub fn check(listens: &[Listen]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for (i, listen) in listens.iter().enumerate() {
        if let Some(first) = listens[..i].iter().find(|earlier| earlier.address == listen.address) {
            problems.push(format!("  * {}: {} is also where {} listens", listen.what, listen.address, first.what));
            continue;
        }
        let Err(error) = TcpListener::bind(listen.address) else { continue };
        let why = match error.kind() {
            std::io::ErrorKind::AddrInUse => "is already in use (another sidecar or program listens there)".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "is not an address of this host".to_owned(),
            _ => format!("cannot be bound: {error}"),
        };
        problems.push(format!("  * {}: {} {why}", listen.what, listen.address));
    }
    if !problems.is_empty() {
        bail!("Envoy could not listen where the Dataplane says:\n{}", problems.join("\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inbounds_outbounds_and_admin_with_their_default_addresses() {
        let dataplane = json!({"networking": {
            "address": "127.0.0.2",
            "inbound": [
                {"port": 10001, "tags": {"kuma.io/service": "web"}},
                {"port": 10001, "tags": {"kuma.io/service": "web-admin"}},
                {"port": 10002, "address": "127.0.0.3", "tags": {"kuma.io/service": "api"}},
            ],
            "outbound": [
                {"port": 20001, "tags": {"kuma.io/service": "backend"}},
                {"port": 20002, "address": "127.0.0.4", "backendRef": {"kind": "MeshService", "name": "db", "port": 5432}},
            ],
        }});
        let bootstrap = json!({"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}}});
        let found: Vec<(String, String)> = dataplane_listens(&dataplane)
            .into_iter()
            .chain(bootstrap_admin(&bootstrap))
            .map(|l| (l.what, l.address.to_string()))
            .collect();
        let expected = [
            ("inbound networking.inbound[0] (service web)", "127.0.0.2:10001"),
            ("inbound networking.inbound[1] (service web-admin)", "127.0.0.2:10001"),
            ("inbound networking.inbound[2] (service api)", "127.0.0.3:10002"),
            ("outbound networking.outbound[0] (to backend)", "127.0.0.1:20001"),
            ("outbound networking.outbound[1] (to db)", "127.0.0.4:20002"),
            ("Envoy's admin API", "127.0.0.1:9901"),
        ];
        assert_eq!(found, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    }

    #[test]
    fn kernel_chosen_ports_and_hostnames_are_not_checked() {
        let dataplane = json!({"networking": {"address": "web.local", "inbound": [{"port": 10001}]}});
        let bootstrap = json!({"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}});
        assert_eq!(dataplane_listens(&dataplane), []);
        assert_eq!(bootstrap_admin(&bootstrap), None);
    }

    #[test]
    fn a_taken_port_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let listens = [
            Listen { what: "outbound networking.outbound[0] (to backend)".into(), address: free },
            Listen { what: "inbound networking.inbound[0] (service web)".into(), address: taken.local_addr().unwrap() },
        ];
        let message = check(&listens).unwrap_err().to_string();
        assert!(
            message.contains(&format!(
                "inbound networking.inbound[0] (service web): {} is already in use",
                taken.local_addr().unwrap()
            )),
            "{message}"
        );
        assert!(!message.contains("outbound"), "{message}");
        assert!(check(&listens[..1]).is_ok());
    }

    #[test]
    fn two_entries_on_one_address_are_both_named() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let listens = [
            Listen { what: "inbound networking.inbound[0] (service web)".into(), address: free },
            Listen { what: "inbound networking.inbound[1] (service web-admin)".into(), address: free },
            Listen { what: "outbound networking.outbound[0] (to backend)".into(), address: free },
        ];
        let message = check(&listens).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "Envoy could not listen where the Dataplane says:\n  \
                 * inbound networking.inbound[1] (service web-admin): {free} is also where inbound networking.inbound[0] (service web) listens\n  \
                 * outbound networking.outbound[0] (to backend): {free} is also where inbound networking.inbound[0] (service web) listens"
            )
        );
    }
}
