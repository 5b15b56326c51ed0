//! Raw system calls that have no safe wrapper in nix: the only `unsafe` code of vitrine.
//!
//! Every `unsafe` block performs exactly one operation and says in a `SAFETY:` comment why the
//! call cannot violate memory safety. Everything above this module uses safe functions only.

pub mod caps;
pub mod clock;
pub mod fd;
pub mod filter;
pub mod landlock_abi;
pub mod netif;
pub mod notify;
pub mod process;
pub mod spawn;

#[cfg(feature = "probe")]
pub mod probe;

use std::io;

/// Turns a `-1`-on-error return value into an `io::Result`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}
