//! Who is calling: the role of a control-socket peer, from its kernel-reported credentials.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};
use vitrine_policy::ControlConfig;

use super::Request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// uid 0 or a member of the admin group: every verb.
    Admin,
    /// A member of the operator group: every verb but `reload`.
    Operator,
    Refused,
}

impl Role {
    pub fn permits(self, request: &Request) -> bool {
        match self {
            Role::Admin => true,
            Role::Operator => !matches!(request, Request::Reload),
            Role::Refused => false,
        }
    }
}

/// The role of a peer with `uid`/`gid` (from SO_PEERCRED). Blocking: consults the user and group
/// databases (NSS), so call it from `spawn_blocking`.
pub fn role_of(uid: u32, gid: u32, config: &ControlConfig) -> Role {
    if uid == 0 {
        return Role::Admin;
    }
    let groups = groups_of(uid, gid);
    let member = |name: &str| group_gid(name).is_some_and(|g| groups.contains(&g));
    if member(&config.admin_group) {
        Role::Admin
    } else if member(&config.operator_group) {
        Role::Operator
    } else {
        Role::Refused
    }
}

/// The refusal a caller without a role reads.
pub fn refusal(uid: u32, request: &Request, role: Role, config: &ControlConfig) -> String {
    match role {
        Role::Operator => format!(
            "permission denied: `{}` needs the admin role (uid 0 or group {:?}); uid {uid} is an operator",
            request.verb(),
            config.admin_group
        ),
        _ => format!(
            "permission denied: uid {uid} is neither root nor in group {:?} (admin) or {:?} (operator)",
            config.admin_group, config.operator_group
        ),
    }
}

pub fn group_gid(name: &str) -> Option<u32> {
    Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw())
}

/// The caller's primary gid plus every group the user database lists the user in.
fn groups_of(uid: u32, gid: u32) -> Vec<u32> {
    let mut groups = vec![gid];
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    if let Some(user) = user
        && let Ok(name) = CString::new(user.name)
        && let Ok(list) = getgrouplist(&name, Gid::from_raw(gid))
    {
        groups.extend(list.into_iter().map(Gid::as_raw));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(admin: &str, operator: &str) -> ControlConfig {
        ControlConfig {
            socket: "/run/vitrine/control.sock".into(),
            admin_group: admin.into(),
            operator_group: operator.into(),
        }
    }

    #[test]
    fn root_is_admin_and_strangers_are_refused() {
        let cfg = config("vitrine-admin-missing", "vitrine-missing");
        assert_eq!(role_of(0, 0, &cfg), Role::Admin);
        assert_eq!(role_of(65534, 65534, &cfg), Role::Refused);
        let msg = refusal(65534, &Request::Reload, Role::Refused, &cfg);
        assert!(msg.contains("uid 65534") && msg.contains("vitrine-missing"), "{msg}");
    }

    #[test]
    fn group_membership_grants_the_role() {
        // nobody's primary group is nogroup on Debian; use it as the operator group.
        let Some(nogroup) = group_gid("nogroup") else {
            eprintln!("skipped: no group `nogroup` on this system");
            return;
        };
        let cfg = config("vitrine-admin-missing", "nogroup");
        assert_eq!(role_of(65534, nogroup, &cfg), Role::Operator);
        let cfg = config("nogroup", "vitrine-missing");
        assert_eq!(role_of(65534, nogroup, &cfg), Role::Admin);
    }

    #[test]
    fn operators_may_not_reload() {
        assert!(!Role::Operator.permits(&Request::Reload));
        assert!(Role::Operator.permits(&Request::Stop { name: "a".into() }));
        assert!(Role::Admin.permits(&Request::Reload));
        assert!(!Role::Refused.permits(&Request::Status { name: None }));
    }
}
