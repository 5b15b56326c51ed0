//! Landlock for the visualization: every access right the running kernel knows is handled,
//! only the plan's paths are granted, TCP bind/connect are denied and scopes are on.
//!
//! `required` makes every requested right a hard requirement and refuses a kernel whose ABI is
//! below the policy's floor; `best-effort` takes what the kernel offers. Either way the caller
//! gets a [`LandlockReport`] of what is actually enforced.

use std::os::fd::AsFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    PathFdError, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::plan::{FsAccess, FsRule, LandlockPlan};
use crate::proto::LandlockReport;
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error(
        "the kernel's Landlock ABI is {kernel}, below the policy's landlock_min_abi = {floor}; \
         upgrade the kernel or lower the floor"
    )]
    BelowFloor { kernel: u32, floor: u8 },
    #[error("cannot open granted path {path}")]
    Path { path: String, source: std::io::Error },
    #[error("Landlock rejected the ruleset")]
    Ruleset(#[source] landlock::RulesetError),
    #[error("Landlock is required but only {status} on this kernel (ABI {abi})")]
    NotFullyEnforced { status: &'static str, abi: u32 },
}

/// Restricts the calling process; call after `PR_SET_NO_NEW_PRIVS` and right before exec.
pub fn apply(plan: &LandlockPlan) -> Result<LandlockReport, LandlockError> {
    let kernel_abi = sys::landlock_abi::abi();
    if plan.required && kernel_abi < u32::from(plan.min_abi) {
        return Err(LandlockError::BelowFloor { kernel: kernel_abi, floor: plan.min_abi });
    }
    let abi = ABI::from(i32::try_from(kernel_abi).unwrap_or(i32::MAX));
    let level = if plan.required { CompatLevel::HardRequirement } else { CompatLevel::BestEffort };
    let mut skipped = Vec::new();
    let status = restrict(plan, abi, level, &mut skipped).map_err(|e| match e {
        Step::Ruleset(e) => LandlockError::Ruleset(e),
        Step::Path(path, source) => LandlockError::Path { path, source },
    })?;
    let fully = matches!(status.ruleset, RulesetStatus::FullyEnforced);
    let text = status_text(status.ruleset);
    if plan.required && !fully {
        return Err(LandlockError::NotFullyEnforced { status: text, abi: kernel_abi });
    }
    Ok(LandlockReport {
        kernel_abi,
        abi: abi as u32,
        status: text.to_owned(),
        no_new_privs: status.no_new_privs,
        skipped,
    })
}

enum Step {
    Ruleset(landlock::RulesetError),
    Path(String, std::io::Error),
}

impl From<landlock::RulesetError> for Step {
    fn from(e: landlock::RulesetError) -> Self {
        Step::Ruleset(e)
    }
}

fn restrict(
    plan: &LandlockPlan,
    abi: ABI,
    level: CompatLevel,
    skipped: &mut Vec<String>,
) -> Result<landlock::RestrictionStatus, Step> {
    let mut ruleset =
        Ruleset::default().set_compatibility(level).handle_access(AccessFs::from_all(abi))?;
    // TCP bind/connect are handled and no port is granted: the visualization gets no TCP at all.
    if abi >= ABI::V4 {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
    }
    // Abstract Unix sockets and signals outside the sandbox's Landlock domain are unreachable.
    if abi >= ABI::V6 {
        ruleset = ruleset.scope(Scope::from_all(abi))?;
    }
    let mut created = ruleset.create()?;
    for rule in &plan.rules {
        let Some((fd, is_dir)) = open_rule(rule, skipped)? else { continue };
        let access = rights(rule.access, abi, is_dir);
        created = created.add_rule(PathBeneath::new(fd, access))?;
    }
    Ok(created.restrict_self()?)
}

/// Opens a rule's path (one lookup; its type comes from the descriptor); absent optional paths
/// are recorded and skipped.
fn open_rule(rule: &FsRule, skipped: &mut Vec<String>) -> Result<Option<(PathFd, bool)>, Step> {
    let display = rule.path.display().to_string();
    let fd = match PathFd::new(Path::new(&rule.path)) {
        Ok(fd) => fd,
        Err(PathFdError::OpenCall { source, .. })
            if rule.optional && source.kind() == std::io::ErrorKind::NotFound =>
        {
            skipped.push(display);
            return Ok(None);
        }
        Err(e) => return Err(Step::Path(display, std::io::Error::other(e.to_string()))),
    };
    let stat = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| Step::Path(display, e.into()))?;
    let is_dir = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    Ok(Some((fd, is_dir)))
}

/// The Landlock rights for one grant, limited to what `abi` knows and what a file can carry.
pub fn rights(access: FsAccess, abi: ABI, is_dir: bool) -> BitFlags<AccessFs> {
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi) & !AccessFs::Execute;
    let wanted = match access {
        FsAccess::Read => read,
        FsAccess::Exec => read | AccessFs::Execute,
        FsAccess::ReadWrite => all & !AccessFs::Execute & !AccessFs::IoctlDev,
        FsAccess::Device => read | AccessFs::WriteFile | AccessFs::IoctlDev,
    };
    let wanted = wanted & all;
    if is_dir { wanted } else { wanted & AccessFs::from_file(abi) }
}

fn status_text(status: RulesetStatus) -> &'static str {
    match status {
        RulesetStatus::FullyEnforced => "fully-enforced",
        RulesetStatus::PartiallyEnforced => "partially-enforced",
        RulesetStatus::NotEnforced => "not-enforced",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_kernel_is_refused_before_anything_is_restricted() {
        let plan = LandlockPlan { required: true, min_abi: u8::MAX, rules: vec![] };
        let err = apply(&plan).expect_err("no kernel has ABI 255");
        assert!(matches!(err, LandlockError::BelowFloor { floor: u8::MAX, .. }), "{err}");
    }

    #[test]
    fn read_grants_never_include_write_or_execute() {
        for abi in [ABI::V1, ABI::V3, ABI::V5, ABI::V7] {
            let r = rights(FsAccess::Read, abi, true);
            assert!(!r.contains(AccessFs::Execute));
            assert!(!r.contains(AccessFs::WriteFile));
            assert!(r.contains(AccessFs::ReadFile | AccessFs::ReadDir));
        }
    }

    #[test]
    fn file_grants_carry_only_file_rights() {
        let r = rights(FsAccess::ReadWrite, ABI::V7, false);
        assert!(!r.contains(AccessFs::ReadDir));
        assert!(!r.contains(AccessFs::MakeReg));
        assert!(r.contains(AccessFs::WriteFile));
    }

    #[test]
    fn device_grants_ioctl_only_where_the_abi_has_it() {
        assert!(rights(FsAccess::Device, ABI::V5, false).contains(AccessFs::IoctlDev));
        assert!(!rights(FsAccess::Device, ABI::V4, false).contains(AccessFs::IoctlDev));
        assert!(!rights(FsAccess::ReadWrite, ABI::V7, true).contains(AccessFs::IoctlDev));
    }
}
