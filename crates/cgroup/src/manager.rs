//! Finding the hierarchy, preparing the supervisor's subtree, creating and cleaning cgroups.
//!
//! Layout. On v2 the supervisor works inside its own (delegated) cgroup `D`: it moves itself
//! into the leaf `D/supervisor` (the "no internal processes" rule forbids enabling controllers
//! for children of a cgroup that still holds processes; Debian 12's systemd 252 has no
//! `DelegateSubgroup=` to do this for us), enables the controllers in `D/cgroup.subtree_control`
//! and `D/<root>/cgroup.subtree_control`, and puts each visualization in `D/<root>/<name>`.
//! When the supervisor runs in the root cgroup (a container or a VM without systemd), `D` is
//! the mount itself and nothing is moved.
//!
//! On v1 each controller has its own hierarchy. The supervisor again nests under its own cgroup
//! of each hierarchy: `<mount>/<own path>/<root>/<name>` (for example
//! `/sys/fs/cgroup/memory/system.slice/vitrine.service/vitrine/aurora` under systemd with
//! `Delegate=yes`, or `/sys/fs/cgroup/pids/vitrine/aurora` from a root shell). Nesting keeps
//! every limit an administrator put on the supervisor above its visualizations, behaves like
//! the v2 layout, and needs no move because v1 allows processes in inner cgroups.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::hierarchies::{Mountinfo, mountinfo_self};

use crate::cgroup::{Cgroup, Placement};
use crate::fsutil::{self, on_disk, own_cgroup};
use crate::{Controller, Error, Limits, Missing, Version, limits};

/// The usual place of cgroupfs.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The leaf the supervisor moves itself into on v2.
const SUPERVISOR_LEAF: &str = "supervisor";
/// Controllers enabled for children on v2. `cpuacct` and `freezer` are not controllers there:
/// `cpu.stat` and `cgroup.freeze` exist in every non-root cgroup.
const V2_CONTROLLERS: [Controller; 4] =
    [Controller::Memory, Controller::Cpu, Controller::Cpuset, Controller::Pids];

/// Creates and cleans the per-visualization cgroups of one supervisor.
#[derive(Debug, Clone)]
pub struct Manager {
    version: Version,
    root_name: String,
    layout: Layout,
    missing: Vec<Missing>,
}

#[derive(Debug, Clone)]
enum Layout {
    /// The `<root>` directory of each available controller's hierarchy.
    V1 { bases: BTreeMap<Controller, PathBuf> },
    /// The `<root>` directory and the controllers its children get.
    V2 { base: PathBuf, available: Vec<Controller> },
}

/// One leftover cgroup removed by [`Manager::cleanup_leftovers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleaned {
    pub name: String,
    /// The processes that were still running in it and were killed.
    pub killed: Vec<i32>,
}

impl Manager {
    /// Finds the host's cgroup hierarchy and prepares the subtree `root_name` (normally
    /// `"vitrine"`) for the visualizations.
    ///
    /// cgroup v2 is used when `/sys/fs/cgroup` is a cgroup2 mount, otherwise the v1
    /// per-controller hierarchies. Missing controllers are not an error here: they are listed
    /// by [`Manager::missing`], and [`Manager::create`] fails for a limit that needs one.
    pub fn detect(root_name: &str) -> Result<Manager, Error> {
        check_name(root_name)?;
        let root = Path::new(CGROUP_ROOT);
        if root.join("cgroup.controllers").exists() {
            return Self::detect_v2_at(root, root_name);
        }
        let mounts = mountinfo_self();
        if let Some(manager) = Self::detect_v1(&mounts, root_name)? {
            return Ok(manager);
        }
        Err(Error::NoHierarchy { path: root.to_owned() })
    }

    /// Uses the cgroup2 mount at `mount` (for example the `unified` mount of a hybrid host),
    /// with the same layout and delegation steps as [`Manager::detect`] on a v2 host.
    pub fn detect_v2_at(mount: &Path, root_name: &str) -> Result<Manager, Error> {
        check_name(root_name)?;
        if !mount.join("cgroup.controllers").exists() {
            return Err(Error::NotCgroup2 { path: mount.to_owned() });
        }
        let mount_root = mountinfo_self()
            .into_iter()
            .find(|m| m.mount_point == mount && m.fs_type.0 == "cgroup2")
            .map_or_else(|| PathBuf::from("/"), |m| m.mount_root);
        let proc_cgroup = fsutil::read(Path::new("/proc/self/cgroup"))?;
        let own = own_cgroup(&proc_cgroup, "").unwrap_or_else(|| PathBuf::from("/"));
        let mut delegated = on_disk(mount, &mount_root, &own);
        if delegated != mount && delegated.ends_with(SUPERVISOR_LEAF) {
            // A previous detection in this process already moved us into the leaf.
            delegated.pop();
        }
        let offered = words(&fsutil::read(&delegated.join("cgroup.controllers"))?);
        let wanted: Vec<Controller> =
            V2_CONTROLLERS.into_iter().filter(|c| offered.iter().any(|o| o == c.name())).collect();
        if delegated != mount && !wanted.is_empty() {
            move_self_into_leaf(&delegated)?;
        }
        let base = delegated.join(root_name);
        let mut missing = Vec::new();
        enable_v2(&delegated, &wanted, &mut missing);
        create_dir(&base)?;
        let still_wanted: Vec<Controller> = wanted
            .iter()
            .copied()
            .filter(|c| !missing.iter().any(|m: &Missing| m.controller == *c))
            .collect();
        enable_v2(&base, &still_wanted, &mut missing);
        let enabled = words(&fsutil::read(&base.join("cgroup.subtree_control"))?);
        let mut available: Vec<Controller> =
            V2_CONTROLLERS.into_iter().filter(|c| enabled.iter().any(|e| e == c.name())).collect();
        available.push(Controller::Cpuacct);
        if base.join("cgroup.freeze").exists() {
            available.push(Controller::Freezer);
        }
        for c in Controller::ALL {
            if !available.contains(&c) && !missing.iter().any(|m| m.controller == c) {
                missing.push(Missing {
                    controller: c,
                    reason: Some(format!("not offered in {}", delegated.display())),
                });
            }
        }
        available.sort();
        Ok(Manager {
            version: Version::V2,
            root_name: root_name.to_owned(),
            layout: Layout::V2 { base, available },
            missing,
        })
    }

    fn detect_v1(mounts: &[Mountinfo], root_name: &str) -> Result<Option<Manager>, Error> {
        let proc_cgroup = fsutil::read(Path::new("/proc/self/cgroup"))?;
        let mut bases = BTreeMap::new();
        let mut missing = Vec::new();
        for c in Controller::ALL {
            let mount = mounts
                .iter()
                .find(|m| m.fs_type.0 == "cgroup" && m.super_opts.iter().any(|o| o == c.name()));
            match mount {
                Some(m) => {
                    let own =
                        own_cgroup(&proc_cgroup, c.name()).unwrap_or_else(|| PathBuf::from("/"));
                    let dir = on_disk(&m.mount_point, &m.mount_root, &own);
                    bases.insert(c, dir.join(root_name));
                }
                None => missing.push(Missing {
                    controller: c,
                    reason: Some("no cgroup v1 hierarchy mounted for it".to_owned()),
                }),
            }
        }
        if bases.is_empty() {
            return Ok(None);
        }
        Ok(Some(Manager {
            version: Version::V1,
            root_name: root_name.to_owned(),
            layout: Layout::V1 { bases },
            missing,
        }))
    }

    /// The cgroup interface in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The controllers visualizations' cgroups get.
    pub fn available(&self) -> Vec<Controller> {
        match &self.layout {
            Layout::V1 { bases } => bases.keys().copied().collect(),
            Layout::V2 { available, .. } => available.clone(),
        }
    }

    /// Whether `controller` is available.
    pub fn has(&self, controller: Controller) -> bool {
        self.available().contains(&controller)
    }

    /// The controllers that are not available, each with its consequence (for the start-up
    /// log and `vitrine status`).
    pub fn missing(&self) -> &[Missing] {
        &self.missing
    }

    /// The directories that hold the visualizations' cgroups (one per v1 hierarchy).
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = match &self.layout {
            Layout::V1 { bases } => bases.values().cloned().collect(),
            Layout::V2 { base, .. } => vec![base.clone()],
        };
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// A one-line description such as
    /// `cgroup v1 under vitrine: memory, cpu, cpuacct, cpuset, pids, freezer`.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.available().iter().map(|c| c.name()).collect();
        let mut line = format!("{} under {}: {}", self.version, self.root_name, names.join(", "));
        for m in &self.missing {
            line.push_str("; ");
            line.push_str(&m.to_string());
        }
        line
    }

    /// Creates the cgroup `name` with `limits`.
    ///
    /// Fails closed: a limit whose controller is unavailable is an error, and when any limit
    /// cannot be applied the new cgroup is removed again. An existing empty cgroup of the same
    /// name (left by a crash) is reused; one with processes in it is [`Error::Busy`].
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, Error> {
        check_name(name)?;
        limits::validate(limits)?;
        limits::require_controllers(limits, &self.available())?;
        let cgroup = self.handle(name);
        let pids = cgroup.pids()?;
        if !pids.is_empty() {
            return Err(Error::Busy { path: cgroup.dirs()[0].clone(), pids });
        }
        let made = cgroup
            .dirs()
            .iter()
            .try_for_each(|dir| create_dir(dir))
            .and_then(|()| limits::prepare_cpuset(&cgroup))
            .and_then(|()| limits::apply(&cgroup, limits));
        if let Err(e) = made {
            // Best effort: the error that matters to the user is the first one, not the rmdir.
            let _ = cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// A handle to the cgroup `name`, whether or not it exists.
    pub(crate) fn handle(&self, name: &str) -> Cgroup {
        let placement = match &self.layout {
            Layout::V1 { bases } => {
                Placement::V1 { dirs: bases.iter().map(|(c, b)| (*c, b.join(name))).collect() }
            }
            Layout::V2 { base, available } => {
                Placement::V2 { dir: base.join(name), available: available.clone() }
            }
        };
        Cgroup::new(name.to_owned(), placement)
    }

    /// Moves the calling thread back to the supervisor's own cgroup in every hierarchy, after
    /// [`Cgroup::enter_calling_thread`] (v1; nothing to do on v2).
    pub fn return_calling_thread(&self) -> Result<(), Error> {
        let Layout::V1 { bases } = &self.layout else {
            return Ok(());
        };
        let mut homes: Vec<&Path> = bases.values().filter_map(|b| b.parent()).collect();
        homes.sort();
        homes.dedup();
        let mut first_error = None;
        for home in homes {
            // Every hierarchy is tried, so one failure strands the thread in as few as possible.
            if let Err(e) = fsutil::write(&home.join("tasks"), "0") {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Kills and removes every cgroup under this supervisor's subtree, as left by a previous
    /// run that did not shut down cleanly. Returns what was cleaned; the first failure stops
    /// the cleanup because a cgroup that cannot be removed needs a human.
    ///
    /// Only the one supervisor that owns `root_name` in this cgroup may call this: anything
    /// else using the same root name and living in the same cgroup would be killed too (which
    /// is why `vitrine run` uses a root of its own).
    pub fn cleanup_leftovers(&self) -> Result<Vec<Cleaned>, Error> {
        let mut names = Vec::new();
        for base in self.base_dirs() {
            let entries = match fs::read_dir(&base) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Read { path: base, source }),
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        let mut cleaned = Vec::new();
        for name in names {
            let cgroup = self.handle(&name);
            let killed = cgroup.kill_all()?;
            cgroup.remove()?;
            cleaned.push(Cleaned { name, killed });
        }
        Ok(cleaned)
    }
}

/// Cgroup names become directory names: keep them to a safe, portable alphabet.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name != SUPERVISOR_LEAF
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(Error::InvalidName { name: name.to_owned() }) }
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn create_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::Create { path: path.to_owned(), source })
}

/// Moves the whole supervisor process (all its threads) into `<delegated>/supervisor`.
fn move_self_into_leaf(delegated: &Path) -> Result<(), Error> {
    let leaf = delegated.join(SUPERVISOR_LEAF);
    create_dir(&leaf)?;
    let procs = leaf.join("cgroup.procs");
    fs::write(&procs, std::process::id().to_string())
        .map_err(|source| Error::MoveSelf { path: leaf, source })
}

/// Enables each controller for the children of `dir` one by one, so a failure names the
/// controller that could not be enabled; failures become `missing` entries.
fn enable_v2(dir: &Path, controllers: &[Controller], missing: &mut Vec<Missing>) {
    let control = dir.join("cgroup.subtree_control");
    for c in controllers {
        let value = format!("+{}", c.name());
        if let Err(e) = fs::write(&control, &value) {
            missing.push(Missing {
                controller: *c,
                reason: Some(format!(
                    "cannot write {value} to {}: {e}; the cgroup still holds other processes or \
                     does not delegate it (run vitrine under systemd with Delegate=yes)",
                    control.display()
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["aurora", "a-b_c.1", "x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "..", "a/b", "supervisor", "sp ace", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
