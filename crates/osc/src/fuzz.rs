//! Entry points for the fuzz targets (`fuzz/fuzz_targets/osc_*.rs` are one-line wrappers), so
//! the properties they check live next to the code and also run as unit tests.
//!
//! Properties: nothing panics on any input; every message that validates re-encodes into a
//! packet that passes the structural check and validates again to the same value; everything
//! the router queues for a child is canonical and addresses a parameter of that child.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use vitrine_policy::{Osc, OscParam, OutOfRange, ParamKind};

use crate::encode::encode_value;
use crate::rate::SourceLimits;
use crate::router::{Router, RouterConfig};
use crate::validate::validate;
use crate::wire;

const MAX: usize = 8192;

fn kinds() -> Vec<ParamKind> {
    vec![
        ParamKind::Float { range: Some((-1.0, 1.0)), out_of_range: OutOfRange::Clamp },
        ParamKind::Float { range: None, out_of_range: OutOfRange::Reject },
        ParamKind::Int { range: Some((0, 127)), out_of_range: OutOfRange::Reject },
        ParamKind::Int { range: None, out_of_range: OutOfRange::Clamp },
        ParamKind::Bool,
        ParamKind::String { max_len: Some(16), one_of: Some(vec!["warm".into(), "cold".into()]) },
        ParamKind::String { max_len: None, one_of: None },
        ParamKind::Impulse,
        ParamKind::Blob { max_len: 64 },
        ParamKind::Color,
        ParamKind::Midi,
    ]
}

/// Decodes `data` as one datagram and validates every message against every parameter type.
pub fn decode_and_validate(data: &[u8]) {
    let kinds = kinds();
    let mut out = Vec::new();
    let _ = wire::for_each_message(data, MAX, &mut |_, message| {
        let _ = crate::pattern::matches(message.address, "/fuzz/a1/speed");
        for kind in &kinds {
            let Ok(value) = validate(kind, &message) else { continue };
            encode_value(&mut out, "/p", &value);
            let mut again = None;
            let checked = wire::for_each_message(&out, usize::MAX, &mut |_, m| {
                again = Some(validate(kind, &m))
            });
            assert_eq!(checked, Ok(()), "re-encoded packet is canonical");
            let again = again.expect("one message");
            assert_eq!(again, Ok(value), "re-validation is stable");
        }
    });
}

fn schema(prefix: &str) -> Osc {
    let params = kinds()
        .into_iter()
        .enumerate()
        .map(|(i, kind)| OscParam {
            address: format!("/a{i}/speed"),
            kind,
            max_rate: Some(50),
            coalesce: i % 2 == 0,
        })
        .collect();
    Osc { prefix: prefix.into(), max_rate: 200, params }
}

/// Feeds `data` to a router with a fixed schema as a series of datagrams: each starts with a
/// length byte (×4) and a source byte; time advances 1 ms per datagram.
pub fn route(data: &[u8]) {
    let config = RouterConfig {
        max_packet: 1024,
        sources: SourceLimits {
            rate: 100,
            violations: 20,
            cooldown: Duration::from_millis(50),
            max_sources: 4,
        },
        outbox_capacity: 8,
        ..RouterConfig::default()
    };
    let mut router = Router::new(config);
    let t0 = Instant::now();
    let schemas = [schema("/fuzz"), schema("/other/deep")];
    let ids = [router.attach("fuzz", &schemas[0], t0), router.attach("other", &schemas[1], t0)];
    let mut rest = data;
    let mut tick = 0u64;
    while let [len, source, tail @ ..] = rest {
        let n = (usize::from(*len) * 4).min(tail.len());
        let (packet, next) = tail.split_at(n);
        rest = next;
        tick += 1;
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, source % 8)), 9000);
        let now = t0 + Duration::from_millis(tick);
        router.route(packet, from, now, SystemTime::now());
        if source % 3 == 0 {
            let _ = router.feedback(ids[usize::from(source % 2)], packet, now, &mut |b| {
                assert_eq!(wire::check(b, usize::MAX), Ok(()));
            });
        }
        for (id, osc) in ids.iter().zip(&schemas) {
            let Some(outbox) = router.outbox(*id) else { continue };
            while let Some(bytes) = outbox.front() {
                let mut known = false;
                let checked = wire::for_each_message(bytes, usize::MAX, &mut |_, m| {
                    let param = osc.params.iter().find(|p| p.address == m.address);
                    known = param.is_some_and(|p| validate(&p.kind, &m).is_ok());
                });
                assert_eq!(checked, Ok(()), "delivered packets are canonical");
                assert!(known, "delivered messages address a parameter of the child and validate");
                outbox.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_points_hold_on_a_pseudo_random_stream() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds: [&[u8]; 4] = [
            b"/fuzz/a0/speed\0\0,f\0\0",
            b"/*/a{1,2}/speed\0,i\0\0",
            b"#bundle\0\0\0\0\0\0\0\0\x01",
            b",sbTFrm\0",
        ];
        for _ in 0..3000 {
            let mut data = Vec::new();
            for _ in 0..(next() % 6) {
                let r = next();
                let seed = seeds[(r % 4) as usize];
                data.push((seed.len() / 4 + 1) as u8);
                data.push((r >> 8) as u8);
                data.extend_from_slice(seed);
                data.extend_from_slice(&r.to_be_bytes()[..4]);
            }
            decode_and_validate(&data[2.min(data.len())..]);
            route(&data);
        }
    }
}
