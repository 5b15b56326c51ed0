//! The control socket: how `vitrine status|start|stop|restart|reload|logs|events` talk to
//! `vitrine serve`.
//!
//! # Protocol
//!
//! A Unix stream socket (`[control] socket`, default `/run/vitrine/control.sock`, mode 0660,
//! group `[control] operator_group` when that group exists). The client sends **one request**: a
//! JSON object on one line, at most [`MAX_REQUEST`] bytes including the newline, within
//! [`REQUEST_TIMEOUT`]. The daemon answers with one or more JSON objects, one per line, then
//! closes the connection.
//!
//! Requests (`verb` tag):
//! ```text
//! {"verb":"status"}                          {"verb":"status","name":"aurora"}
//! {"verb":"start","name":"aurora"}           {"verb":"stop","name":"aurora"}
//! {"verb":"restart","name":"aurora"}         {"verb":"reload"}
//! {"verb":"logs","name":"aurora","follow":false}
//! {"verb":"events","follow":true}
//! ```
//! Responses (`type` tag):
//! ```text
//! {"type":"status","visualizations":[{...UnitStatus...}]}
//! {"type":"state","name":"aurora","state":"running"}   start/stop/restart, once settled
//! {"type":"reload","added":[],"changed":[],"removed":[],"rejected":["PATH:LINE:COL: error: ..."]}
//! {"type":"log","line":{"seq":1,"ts_ms":...,"stream":"stdout","line":"..."}}   one per line
//! {"type":"event","event":{"seq":1,"ts_ms":...,"kind":"running",...}}           one per event
//! {"type":"lagged","missed":12}              a follower fell behind and lost lines/events
//! {"type":"error","message":"..."}           the request was refused or failed
//! ```
//! `logs` and `events` first send what the daemon kept (a bounded ring), then, with
//! `"follow":true`, keep streaming until the client disconnects.
//!
//! # Who may do what
//!
//! The caller's uid and gid come from `SO_PEERCRED`, never from the request. uid 0 and members
//! of `[control] admin_group` are admins (every verb). Members of `[control] operator_group` are
//! operators: every verb but `reload`. Anyone else is refused with a message naming the groups.
//! Every request that changes something, and every refusal, is published as a `control-action`
//! event with the caller's uid (the audit log records them); read-only requests (status, logs,
//! events) are not, so that monitoring does not flood the audit log.

pub mod auth;
pub mod client;
pub mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::daemon::ReloadReport;
use crate::daemon::machine::State;
use crate::daemon::output::LogLine;
use crate::daemon::unit::UnitStatus;
use crate::events::Envelope;

/// The largest request accepted, newline included.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status {
        #[serde(default)]
        name: Option<String>,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Restart {
        name: String,
    },
    Reload,
    Logs {
        name: String,
        #[serde(default)]
        follow: bool,
    },
    Events {
        #[serde(default)]
        follow: bool,
    },
}

impl Request {
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::Start { .. } => "start",
            Request::Stop { .. } => "stop",
            Request::Restart { .. } => "restart",
            Request::Reload => "reload",
            Request::Logs { .. } => "logs",
            Request::Events { .. } => "events",
        }
    }

    /// The visualization the request is about, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Request::Status { name } => name.as_deref(),
            Request::Start { name }
            | Request::Stop { name }
            | Request::Restart { name }
            | Request::Logs { name, .. } => Some(name),
            Request::Reload | Request::Events { .. } => None,
        }
    }

    /// Whether the request changes something (and is therefore published as an action).
    pub fn mutates(&self) -> bool {
        matches!(
            self,
            Request::Start { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Reload
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    Status { visualizations: Vec<UnitStatus> },
    State { name: String, state: State },
    Reload(ReloadReport),
    Log { line: LogLine },
    Event { event: Envelope },
    Lagged { missed: u64 },
    Error { message: String },
}

#[cfg(test)]
mod tests;
