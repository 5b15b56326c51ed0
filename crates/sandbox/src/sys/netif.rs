//! Bringing a network interface up (SIOCGIFFLAGS / SIOCSIFFLAGS).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::check;

/// Sets `IFF_UP` on the interface `name` through the datagram socket `sock`.
pub fn set_up(sock: &OwnedFd, name: &str) -> io::Result<()> {
    let mut req = ifreq_for(name)?;
    // SAFETY: `req` is a valid, initialized ifreq that outlives the call; SIOCGIFFLAGS writes
    // only the flags member of its union.
    let ret =
        unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req as *mut libc::ifreq) };
    check(libc::c_long::from(ret))?;
    // SAFETY: SIOCGIFFLAGS just initialized the flags member, so reading it is defined.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads the name and flags of `req`.
    let ret =
        unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req as *mut libc::ifreq) };
    check(libc::c_long::from(ret)).map(drop)
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data (integers and arrays); all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}
