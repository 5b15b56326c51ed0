//! OSC hot-path benchmark: validated routing throughput on one core and heap allocations per
//! message, plus decode-only throughput of our guarded decoder against rosc on the same bytes.
//!
//! Run: `cargo bench -p vitrine-osc --bench osc_throughput` (prints a small table).
//! A counting global allocator wraps the system one, so "allocations per message" is measured,
//! not assumed.

use std::alloc::System;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use vitrine_osc::encode::{begin_bundle, encode_message, push_bundle_element};
use vitrine_osc::rate::SourceLimits;
use vitrine_osc::wire::{self, Arg};
use vitrine_osc::{Router, RouterConfig};
use vitrine_policy::{Osc, OscParam, OutOfRange, ParamKind};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn schema(prefix: &str) -> Osc {
    let p = |address: &str, kind, coalesce| OscParam {
        address: address.into(),
        kind,
        max_rate: Some(u32::MAX / 2),
        coalesce,
    };
    Osc {
        prefix: prefix.into(),
        max_rate: u32::MAX / 2,
        params: vec![
            p(
                "/speed",
                ParamKind::Float { range: Some((0.0, 10.0)), out_of_range: OutOfRange::Clamp },
                true,
            ),
            p(
                "/count",
                ParamKind::Int { range: Some((0, 100)), out_of_range: OutOfRange::Clamp },
                false,
            ),
            p(
                "/palette",
                ParamKind::String {
                    max_len: Some(16),
                    one_of: Some(vec!["warm".into(), "cold".into()]),
                },
                false,
            ),
            p("/on", ParamKind::Bool, false),
            p("/flash", ParamKind::Impulse, false),
        ],
    }
}

fn msg(address: &str, args: &[Arg<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(&mut out, address, args);
    out
}

/// A mix of what controllers send: faders, ints, strings, a pattern and a bundle.
fn workload() -> Vec<(Vec<u8>, u64)> {
    let mut bundle = Vec::new();
    begin_bundle(&mut bundle, 1);
    for m in [msg("/aurora/speed", &[Arg::Float(1.0)]), msg("/aurora/on", &[Arg::True])] {
        push_bundle_element(&mut bundle, &m);
    }
    vec![
        (msg("/aurora/speed", &[Arg::Float(4.2)]), 1),
        (msg("/aurora/speed", &[Arg::Float(12.0)]), 1),
        (msg("/aurora/count", &[Arg::Int(42)]), 1),
        (msg("/tide/palette", &[Arg::Str(b"cold")]), 1),
        (msg("/tide/flash", &[]), 1),
        (msg("/*/on", &[Arg::Float(1.0)]), 2),
        (bundle, 2),
    ]
}

fn router() -> Router {
    let config = RouterConfig {
        sources: SourceLimits { rate: u32::MAX / 2, ..SourceLimits::default() },
        ..RouterConfig::default()
    };
    let mut r = Router::new(config);
    let now = Instant::now();
    r.attach("aurora", &schema("/aurora"), now);
    r.attach("tide", &schema("/tide"), now);
    r
}

/// Routes the workload `rounds` times, draining outboxes as the delivery path would.
fn run(r: &mut Router, work: &[(Vec<u8>, u64)], rounds: usize, from: SocketAddr) -> u64 {
    let mut delivered = 0u64;
    let now = Instant::now();
    let wall = SystemTime::now();
    let ids = [r.find("aurora"), r.find("tide")];
    for _ in 0..rounds {
        for (packet, _) in work {
            delivered += u64::from(r.route(packet, from, now, wall).delivered);
        }
        for id in ids.iter().flatten() {
            let Some(outbox) = r.outbox(*id) else { continue };
            while let Some(bytes) = outbox.front() {
                black_box(bytes);
                outbox.pop_front();
            }
        }
    }
    delivered
}

fn main() {
    let from: SocketAddr = "127.0.0.1:9999".parse().expect("address");
    let work = workload();
    let per_round: u64 = work.iter().map(|(_, n)| n).sum();
    let mut r = router();
    run(&mut r, &work, 10_000, from);

    let rounds = 200_000;
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    let delivered = run(&mut r, &work, rounds, from);
    let elapsed = start.elapsed();
    let stats = region.change();
    assert_eq!(delivered, per_round * rounds as u64, "every message of the workload is delivered");
    let rate = delivered as f64 / elapsed.as_secs_f64();
    println!(
        "validated routing: {delivered} msgs in {elapsed:.2?} = {:.0} k msgs/s (one core)",
        rate / 1e3
    );
    println!(
        "allocations on the hot path: {} allocs, {} reallocs over {delivered} msgs = {:.4} per msg",
        stats.allocations,
        stats.reallocations,
        (stats.allocations + stats.reallocations) as f64 / delivered as f64
    );
    decode_comparison(&work);
}

fn decode_comparison(work: &[(Vec<u8>, u64)]) {
    let rounds = 200_000;
    let ours = time(|| {
        for _ in 0..rounds {
            for (p, _) in work {
                let _ = wire::for_each_message(p, 8192, &mut |_, m| {
                    m.args().for_each(|a| {
                        black_box(a);
                    })
                });
            }
        }
    });
    let region = Region::new(GLOBAL);
    let theirs = time(|| {
        for _ in 0..rounds {
            for (p, _) in work {
                let _ = black_box(rosc::decoder::decode_udp(p));
            }
        }
    });
    let rosc_allocs = region.change().allocations;
    let packets = (rounds * work.len()) as f64;
    println!(
        "decode only: vitrine-osc {:.0} ns/packet (0 allocs), rosc {:.0} ns/packet ({:.1} allocs/packet)",
        ours.as_nanos() as f64 / packets,
        theirs.as_nanos() as f64 / packets,
        rosc_allocs as f64 / packets
    );
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}
