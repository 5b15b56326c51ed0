//! Decoding the syscall arguments a learning run reads from a sandboxed task's memory. The
//! bytes come from the program being learned, so nothing here trusts a length or a family:
//! every read is bounded by the slice, and nothing panics ([`fuzz_decode`] is the fuzz entry).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A socket address as `bind`/`connect` passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    /// A pathname Unix socket, as bytes (see [`utf8`]).
    Unix(Vec<u8>),
    /// An abstract Unix socket (leading NUL), without that NUL.
    Abstract(String),
    Inet {
        addr: IpAddr,
        port: u16,
    },
    /// Any other family.
    Other(u16),
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The bytes before the first NUL; `None` when there is none.
pub fn c_string(bytes: &[u8]) -> Option<&[u8]> {
    bytes.iter().position(|&b| b == 0).map(|end| &bytes[..end])
}

/// A path as text: `Err` with the bytes shown lossily when they are not UTF-8, since a policy
/// names paths in TOML strings and a replaced byte would name another file.
pub fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A `struct sockaddr` of `bytes.len()` bytes (the length the program passed, capped by the
/// caller).
pub fn sockaddr(bytes: &[u8]) -> Option<SockAddr> {
    let family = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    let port = || bytes.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
    match family {
        AF_UNIX => {
            let path = bytes.get(2..)?;
            match path.split_first() {
                Some((0, name)) => {
                    let name = c_string(name).unwrap_or(name);
                    Some(SockAddr::Abstract(String::from_utf8_lossy(name).into_owned()))
                }
                Some(_) => {
                    let p = c_string(path).unwrap_or(path);
                    Some(SockAddr::Unix(p.to_vec()))
                }
                None => None,
            }
        }
        AF_INET => {
            let a: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SockAddr::Inet { addr: IpAddr::V4(Ipv4Addr::from(a)), port: port()? })
        }
        AF_INET6 => {
            let a: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            Some(SockAddr::Inet { addr: IpAddr::V6(Ipv6Addr::from(a)), port: port()? })
        }
        other => Some(SockAddr::Other(other)),
    }
}

/// The `flags` of a `struct open_how` (openat2), its first field.
pub fn open_how_flags(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The fuzzing entry: every decoder on arbitrary bytes; none may panic.
pub fn fuzz_decode(data: &[u8]) {
    let _ = c_string(data);
    let _ = utf8(data.to_vec());
    let _ = sockaddr(&data[..data.len().min(128)]);
    let _ = open_how_flags(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_families_a_draft_cares_about() {
        let mut un = vec![1, 0];
        un.extend_from_slice(b"/run/x.sock\0junk");
        assert_eq!(sockaddr(&un), Some(SockAddr::Unix(b"/run/x.sock".to_vec())));
        assert_eq!(utf8(b"/tmp/a".to_vec()), Ok("/tmp/a".into()));
        assert_eq!(utf8(b"/tmp/\xff".to_vec()), Err("/tmp/\u{fffd}".into()));
        assert_eq!(sockaddr(&[1, 0, 0, b'a', b'b']), Some(SockAddr::Abstract("ab".into())));
        let inet = [2, 0, 0x23, 0x28, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let want = SockAddr::Inet { addr: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 9000 };
        assert_eq!(sockaddr(&inet), Some(want));
        assert_eq!(sockaddr(&[2, 0, 1]), None, "short IPv4 address");
        assert_eq!(sockaddr(&[10, 0, 0, 53]), None, "short IPv6 address");
        assert_eq!(sockaddr(&[16, 0]), Some(SockAddr::Other(16)));
        assert_eq!(sockaddr(&[1]), None);
        assert_eq!(c_string(b"abc"), None);
        assert_eq!(open_how_flags(&[1, 0, 0, 0, 0, 0, 0, 0, 9]), Some(1));
        fuzz_decode(&[]);
    }
}
