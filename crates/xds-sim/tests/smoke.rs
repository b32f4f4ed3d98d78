//! The simulator against a real `kodiak-cp`: every phase converges for
//! every proxy over both xDS variants, and NACKing proxies are counted as
//! such. Correctness only; speed is measured by the scale benchmark
//! (BENCHMARKS.md), never asserted here.

use std::time::Duration;

use kodiak_xds_sim::control_plane::{ControlPlane, Launch, Store};
use kodiak_xds_sim::proxy::Variant;
use kodiak_xds_sim::scenario::{self, Register, Report, Settings};
use kodiak_xds_sim::topology::Topology;

fn settings(services: usize, instances: usize, variant: Variant, register: Register) -> Settings {
    Settings {
        topology: Topology { mesh: "default".into(), services, instances, outbounds: 3, mtls: true },
        variant,
        register,
        nack_share: 0.0,
        ramp_up: None,
        scale_to: instances + 3,
        idle: Duration::from_secs(1),
        phase_timeout: Duration::from_secs(120),
        api_concurrency: 8,
    }
}

async fn run(settings: &Settings, store: Store) -> Report {
    let launch = Launch { binary: kodiak_e2e::binary("kodiak-cp"), store, dp_tls: true, env: Vec::new() };
    let mut control_plane = ControlPlane::start(&launch).await.expect("kodiak-cp starts");
    let report = scenario::run(settings, &control_plane, &|_| {}).await;
    control_plane.stop().await;
    report.expect("the scenario runs")
}

fn assert_converged(report: &Report, expected: &[(&str, usize)]) {
    for (name, proxies) in expected {
        let phase = report.phase(name).unwrap_or_else(|| panic!("no phase {name}: {report:?}"));
        assert_eq!((phase.spread.reached, phase.spread.expected), (*proxies, *proxies), "{name}: {phase:?}");
        assert!(phase.received.responses > 0, "{name}: the proxies received nothing: {phase:?}");
        assert_eq!((phase.received.nacks, phase.received.reconnects), (0, 0), "{name}: {phase:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sotw_proxies_converge_in_every_phase() {
    let report = run(&settings(100, 2, Variant::Sotw, Register::Api), Store::Sqlite).await;
    // 3 callees each: every service has 3 calling services × 2 instances.
    assert_converged(
        &report,
        &[
            ("connect storm", 200),
            ("mesh-wide policy change", 200),
            ("scale one service", 6),
            ("certificate rotation", 200),
        ],
    );
    let idle = report.phase("idle").unwrap();
    assert_eq!(idle.received.responses, 0, "nothing is pushed while nothing changes: {idle:?}");
    assert_eq!(report.proxies, 203);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_proxies_that_register_themselves_and_ramp_up_converge_in_every_phase() {
    let mut settings = settings(30, 2, Variant::Delta, Register::Inline);
    settings.ramp_up = Some(100.0);
    let report = run(&settings, Store::Memory).await;
    assert_converged(
        &report,
        &[
            ("connect storm", 60),
            ("mesh-wide policy change", 60),
            ("scale one service", 6),
            ("certificate rotation", 60),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_that_nack_everything_never_converge_and_are_counted() {
    let mut settings = settings(4, 1, Variant::Sotw, Register::Api);
    settings.nack_share = 1.0;
    settings.phase_timeout = Duration::from_secs(3);
    settings.scale_to = 0;
    let report = run(&settings, Store::Memory).await;
    let storm = report.phase("connect storm").unwrap();
    assert_eq!(storm.spread.reached, 0, "{storm:?}");
    assert!(storm.received.responses >= 4, "every proxy got its clusters and listeners at least: {storm:?}");
    assert_eq!(storm.received.nacks, storm.received.responses, "{storm:?}");
}
