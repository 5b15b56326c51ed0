//! Measures how long creating a limited cgroup and removing it again takes on this host.
//!
//! Run as root: `cargo run --release -p vitrine-cgroup --example create_remove [ROUNDS]`.

use std::time::{Duration, Instant};

use vitrine_cgroup::{Limits, Manager};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(200), |a| a.parse())?;
    let manager = Manager::detect(&format!("vitrine-bench-{}", std::process::id()))?;
    println!("{}", manager.summary());
    let limits = Limits {
        memory: Some(256 << 20),
        cpu: Some(1.0),
        cpuset: Some("0".to_owned()),
        pids: Some(64),
    };
    let (mut create, mut remove) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let name = format!("bench-{i}");
        let t = Instant::now();
        let cgroup = manager.create(&name, &limits)?;
        create.push(t.elapsed());
        let t = Instant::now();
        cgroup.remove()?;
        remove.push(t.elapsed());
    }
    for base in manager.base_dirs() {
        std::fs::remove_dir(base)?;
    }
    report("create + limits", &mut create);
    report("remove", &mut remove);
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let total: Duration = samples.iter().sum();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{what}: n={} mean={:?} median={:?} p95={:?} max={:?}",
        samples.len(),
        total / samples.len() as u32,
        at(0.5),
        at(0.95),
        at(1.0)
    );
}
