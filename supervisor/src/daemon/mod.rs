//! `vitrine serve`: every visualization of the box, each driven by its own task.
//!
//! [`Daemon`] holds the registry of visualizations (one [`unit`] task each) and applies the
//! policy directory to it: at start-up and on every reload it diffs what is on disk against what
//! runs, restarts only what changed, stops what was removed, starts what was added, and keeps
//! running the previous version of any file that no longer validates.

pub mod companions;
pub mod launcher;
pub mod machine;
pub mod output;
pub mod real;
pub mod serve;
pub mod unit;
pub mod watch;

#[cfg(test)]
pub mod testing;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, oneshot};
use vitrine_policy::{LoadContext, Policy};

use crate::events::{Event, EventBus};
use launcher::{Hooks, Launcher};
use machine::State;
use output::LogRing;
use unit::{Command, UnitStatus, UnitTx};

/// What a reload did, as reported to `vitrine reload` and in the `reload` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// One `PATH:LINE:COL: error: MESSAGE` diagnostic per problem; those files keep their
    /// running version.
    pub rejected: Vec<String>,
}

/// An operator's lifecycle request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

/// The registry of visualizations.
#[derive(Debug)]
pub struct Daemon<L: Launcher> {
    launcher: Arc<L>,
    bus: EventBus,
    hooks: Arc<dyn Hooks>,
    policy_dir: PathBuf,
    ctx: LoadContext,
    units: Mutex<BTreeMap<String, Unit<L>>>,
}

#[derive(Debug)]
struct Unit<L: Launcher> {
    policy: Arc<Policy>,
    tx: UnitTx<L::Prepared>,
    ring: Arc<LogRing>,
    task: tokio::task::JoinHandle<()>,
}

impl<L: Launcher> Daemon<L> {
    pub fn new(
        launcher: Arc<L>,
        bus: EventBus,
        hooks: Arc<dyn Hooks>,
        policy_dir: PathBuf,
        ctx: LoadContext,
    ) -> Arc<Self> {
        let units = Mutex::new(BTreeMap::new());
        Arc::new(Daemon { launcher, bus, hooks, policy_dir, ctx, units })
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Reads the policy directory and applies it (also the start-up path, from an empty registry).
    pub async fn reload(&self) -> ReloadReport {
        let dir = self.policy_dir.clone();
        let ctx = self.ctx.clone();
        let loaded =
            tokio::task::spawn_blocking(move || vitrine_policy::load_policy_dir(&dir, &ctx)).await;
        let (policies, diags) = match loaded {
            Ok(result) => result,
            Err(e) => (
                Vec::new(),
                vitrine_policy::Diagnostic::file(&self.policy_dir, format!("loader failed: {e}"))
                    .into(),
            ),
        };
        let mut report = ReloadReport::default();
        let mut rejected_paths = BTreeSet::new();
        for d in diags.iter() {
            rejected_paths.insert(d.path.clone());
            self.reject(&mut report, &d.path, d.to_string());
        }
        // The registry lock is held for the whole apply so that two reloads never interleave.
        let mut units = self.units.lock().await;
        let wanted: BTreeMap<String, Policy> =
            policies.into_iter().map(|p| (p.visualization.name.to_string(), p)).collect();
        self.remove_missing(&mut units, &wanted, &rejected_paths, &mut report).await;
        // Kept units (an invalid file keeps the old version running) and wanted ones.
        let prefixes = units
            .iter()
            .filter(|(name, _)| !wanted.contains_key(*name))
            .map(|(_, u)| u.policy.osc.prefix.clone())
            .chain(wanted.values().map(|p| p.osc.prefix.clone()))
            .collect();
        self.hooks.local_prefixes(prefixes);
        for (name, policy) in wanted {
            self.apply_one(&mut units, name, policy, &mut report).await;
        }
        drop(units);
        self.bus.publish(Event::Reload {
            added: report.added.clone(),
            changed: report.changed.clone(),
            removed: report.removed.clone(),
            rejected: report.rejected.clone(),
        });
        report
    }

    fn reject(&self, report: &mut ReloadReport, path: &std::path::Path, diagnostic: String) {
        tracing::error!("{diagnostic}");
        self.bus.publish(Event::PolicyRejected {
            path: path.display().to_string(),
            diagnostic: diagnostic.clone(),
        });
        report.rejected.push(diagnostic);
    }

    /// Stops visualizations whose file is gone. One whose file is present but invalid keeps
    /// running its previous version.
    async fn remove_missing(
        &self,
        units: &mut BTreeMap<String, Unit<L>>,
        wanted: &BTreeMap<String, Policy>,
        rejected: &BTreeSet<PathBuf>,
        report: &mut ReloadReport,
    ) {
        let gone: Vec<String> = units
            .iter()
            .filter(|(name, unit)| {
                !wanted.contains_key(*name) && !rejected.contains(&unit.policy.source)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(unit) = units.remove(&name) {
                shutdown_unit(unit).await;
                self.hooks.removed(&name);
                tracing::info!(visualization = %name, "removed");
                report.removed.push(name);
            }
        }
    }

    async fn apply_one(
        &self,
        units: &mut BTreeMap<String, Unit<L>>,
        name: String,
        policy: Policy,
        report: &mut ReloadReport,
    ) {
        if units.get(&name).is_some_and(|u| *u.policy == policy) {
            return;
        }
        let policy = Arc::new(policy);
        let prepared = match self.prepare(&policy).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let diagnostic = format!("{}: error: {e}", policy.source.display());
                return self.reject(report, &policy.source, diagnostic);
            }
        };
        self.bus.publish(Event::PolicyLoaded {
            name: name.clone(),
            path: policy.source.display().to_string(),
        });
        let enabled = policy.visualization.enabled;
        if let Some(unit) = units.get_mut(&name) {
            unit.policy = policy.clone();
            let _ = unit.tx.send(Command::Replace { policy, prepared }).await;
            let verb = if enabled { Command::Start(None) } else { Command::Stop(None) };
            let _ = unit.tx.send(verb).await;
            report.changed.push(name);
        } else {
            let ring = LogRing::new(&name);
            let (tx, task) = unit::spawn_unit(
                self.launcher.clone(),
                policy.clone(),
                prepared,
                self.bus.clone(),
                ring.clone(),
                self.hooks.clone(),
            );
            if enabled {
                let _ = tx.send(Command::Start(None)).await;
            }
            units.insert(name.clone(), Unit { policy, tx, ring, task });
            report.added.push(name);
        }
    }

    async fn prepare(&self, policy: &Arc<Policy>) -> Result<L::Prepared, String> {
        let launcher = self.launcher.clone();
        let policy = policy.clone();
        tokio::task::spawn_blocking(move || launcher.prepare(&policy))
            .await
            .unwrap_or_else(|e| Err(format!("prepare task failed: {e}")))
    }

    /// Starts, stops or restarts one visualization and waits until it settles.
    pub async fn act(&self, name: &str, verb: Verb) -> Result<State, String> {
        let tx = self.sender(name).await?;
        let (ack, rx) = oneshot::channel();
        let cmd = match verb {
            Verb::Start => Command::Start(Some(ack)),
            Verb::Stop => Command::Stop(Some(ack)),
            Verb::Restart => Command::Restart(Some(ack)),
        };
        tx.send(cmd).await.map_err(|_| format!("{name} is shutting down"))?;
        rx.await.map_err(|_| format!("{name} is shutting down"))
    }

    /// The status of one visualization, or of all in name order.
    pub async fn status(&self, name: Option<&str>) -> Result<Vec<UnitStatus>, String> {
        let senders: Vec<(String, UnitTx<L::Prepared>)> = match name {
            Some(n) => vec![(n.to_owned(), self.sender(n).await?)],
            None => {
                self.units.lock().await.iter().map(|(n, u)| (n.clone(), u.tx.clone())).collect()
            }
        };
        let mut out = Vec::with_capacity(senders.len());
        for (name, tx) in senders {
            let (reply, rx) = oneshot::channel();
            if tx.send(Command::Status(reply)).await.is_ok()
                && let Ok(status) = rx.await
            {
                out.push(status);
            } else {
                tracing::debug!(visualization = %name, "status unavailable while shutting down");
            }
        }
        Ok(out)
    }

    /// The output ring of one visualization.
    pub async fn logs(&self, name: &str) -> Result<Arc<LogRing>, String> {
        let units = self.units.lock().await;
        units.get(name).map(|u| u.ring.clone()).ok_or_else(|| unknown(name))
    }

    /// Stops every visualization (each with its own stop timeout, all in parallel).
    pub async fn shutdown(&self) {
        let units = std::mem::take(&mut *self.units.lock().await);
        let stops: Vec<_> = units.into_values().map(|u| tokio::spawn(shutdown_unit(u))).collect();
        for stop in stops {
            let _ = stop.await;
        }
    }

    async fn sender(&self, name: &str) -> Result<UnitTx<L::Prepared>, String> {
        let units = self.units.lock().await;
        units.get(name).map(|u| u.tx.clone()).ok_or_else(|| unknown(name))
    }
}

fn unknown(name: &str) -> String {
    format!("no visualization named {name:?} (see `vitrine status`)")
}

/// Stops a unit's sandbox and waits for its task to end.
async fn shutdown_unit<L: Launcher>(unit: Unit<L>) {
    let (done, rx) = oneshot::channel();
    if unit.tx.send(Command::Shutdown(done)).await.is_ok() {
        let _ = rx.await;
    }
    let _ = unit.task.await;
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod reload_tests;
