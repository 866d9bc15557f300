//! Single-thread throughput of `policy::pki`: leaf certificates issued per second for each key
//! algorithm (key generation included, signed by a CA of the same algorithm), and stored leaves
//! checked per second with `check_leaf`. It prints figures and asserts nothing about them.
//!
//! Run with `cargo bench --bench pki`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use medianest_operator::policy::pki::{
    KeyAlgorithm, LeafRequest, check_leaf, generate_ca, issue_leaf,
};

/// Wall-clock time spent on each figure.
const BUDGET: Duration = Duration::from_secs(2);

/// Minimum operations per figure, so that slow RSA-4096 issuance still gets several samples.
const MIN_OPERATIONS: u32 = 3;

fn main() {
    // `cargo test --all-targets` also runs this binary, without `--bench`, so return at once
    // there.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    println!(
        "pki benchmark: one thread on {}, {BUDGET:?} per figure, at least {MIN_OPERATIONS} \
         operations",
        cpu_model()
    );
    println!(
        "{:<11} {:>10} {:>16} {:>10} {:>16}",
        "algorithm", "issued/s", "issued", "checked/s", "checked"
    );

    // Fixed instants, so no figure depends on the wall clock.
    let now = Timestamp::from_second(1_767_225_600).unwrap();
    let dns_names = vec![
        "api.media.svc".to_owned(),
        "api.media.svc.cluster.local".to_owned(),
    ];
    let ip_addresses = vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 12))];
    for algorithm in KeyAlgorithm::ALL {
        let ca = generate_ca(
            "benchmark CA",
            algorithm,
            now - SignedDuration::from_hours(1),
            now + SignedDuration::from_hours(24 * 365),
        )
        .unwrap();
        let request = LeafRequest {
            common_name: "api.media.svc".to_owned(),
            dns_names: dns_names.clone(),
            ip_addresses: ip_addresses.clone(),
            algorithm,
            not_before: now - SignedDuration::from_hours(1),
            not_after: now + SignedDuration::from_hours(24 * 30),
        };

        let (issued, issue_time) = measure(|| {
            black_box(issue_leaf(&ca, &request).unwrap());
        });

        let leaf = issue_leaf(&ca, &request).unwrap();
        let trusted = [ca.cert_pem.as_str()];
        let (checked, check_time) = measure(|| {
            let verified = check_leaf(
                &leaf.cert_pem,
                leaf.key.expose(),
                &dns_names,
                &ip_addresses,
                &trusted,
                now,
            );
            black_box(verified.unwrap());
        });

        println!(
            "{:<11} {:>10.1} {:>16} {:>10.1} {:>16}",
            algorithm.as_str(),
            rate(issued, issue_time),
            format!("{issued} in {:.1}s", issue_time.as_secs_f64()),
            rate(checked, check_time),
            format!("{checked} in {:.1}s", check_time.as_secs_f64()),
        );
    }
}

/// Runs `operation` until `BUDGET` has passed and at least `MIN_OPERATIONS` ran, and returns
/// the count and the elapsed time.
fn measure(mut operation: impl FnMut()) -> (u32, Duration) {
    let start = Instant::now();
    let mut count = 0;
    while count < MIN_OPERATIONS || start.elapsed() < BUDGET {
        operation();
        count += 1;
    }
    (count, start.elapsed())
}

fn rate(count: u32, elapsed: Duration) -> f64 {
    f64::from(count) / elapsed.as_secs_f64()
}

/// Returns the first "model name" in /proc/cpuinfo, or "an unknown CPU" elsewhere.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|cpuinfo| {
            cpuinfo
                .lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned())
}
