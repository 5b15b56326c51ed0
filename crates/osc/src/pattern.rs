//! OSC 1.0 address patterns (`?`, `*`, `[abc]`, `[a-z]`, `[!a]`, `{foo,bar}`), matched
//! against known addresses only.
//!
//! A pattern is never expanded into addresses: the router asks, for each address the schema
//! knows, whether the pattern matches it. Matching runs part by part (between `/`) as a
//! set-of-positions simulation over the address part, so the work is bounded by
//! `pattern length × address part length` whatever the pattern: there is no backtracking to
//! make catastrophic. Address parts longer than [`MAX_PART`] bytes only match a pattern part
//! that is byte-for-byte equal. A malformed pattern (an unclosed `[` or `{`, a stray `]` or
//! `}`) matches nothing.

/// The longest address part matched with wildcards.
pub const MAX_PART: usize = 255;

/// True when `address` contains pattern syntax and must go through [`matches`].
pub fn is_pattern(address: &str) -> bool {
    address.bytes().any(|b| matches!(b, b'?' | b'*' | b'[' | b']' | b'{' | b'}'))
}

/// True when the OSC pattern `pattern` matches the literal address `address`.
pub fn matches(pattern: &str, address: &str) -> bool {
    let mut pattern_parts = pattern.split('/');
    let mut address_parts = address.split('/');
    loop {
        match (pattern_parts.next(), address_parts.next()) {
            (Some(p), Some(a)) if part_matches(p.as_bytes(), a.as_bytes()) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A set of positions 0..=MAX_PART in an address part.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Positions([u64; 4]);

impl Positions {
    const EMPTY: Positions = Positions([0; 4]);

    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn first(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }

    fn iter(self, len: usize) -> impl Iterator<Item = usize> {
        (0..=len).filter(move |&i| self.contains(i))
    }
}

fn part_matches(pattern: &[u8], s: &[u8]) -> bool {
    if s.len() > MAX_PART {
        return pattern == s;
    }
    let mut cur = Positions::EMPTY;
    cur.insert(0);
    let mut i = 0;
    while i < pattern.len() {
        let Some(min) = cur.first() else { return false };
        let (next, consumed) = match pattern[i] {
            b'*' => (from(min, s.len()), 1),
            b'?' => (step(cur, s, |_| true), 1),
            b'[' => match class_end(pattern, i) {
                Some(end) => {
                    (step(cur, s, |c| class_contains(&pattern[i + 1..end], c)), end + 1 - i)
                }
                None => return false,
            },
            b'{' => match pattern[i..].iter().position(|&b| b == b'}') {
                Some(len) => (alternatives(cur, s, &pattern[i + 1..i + len]), len + 1),
                None => return false,
            },
            b']' | b'}' => return false,
            c => (step(cur, s, |x| x == c), 1),
        };
        cur = next;
        i += consumed;
    }
    cur.contains(s.len())
}

/// Every position from `min` to the end: `*` matches any run of characters.
fn from(min: usize, len: usize) -> Positions {
    let mut out = Positions::EMPTY;
    for i in min..=len {
        out.insert(i);
    }
    out
}

/// Advances every position by one character that satisfies `ok`.
fn step(cur: Positions, s: &[u8], ok: impl Fn(u8) -> bool) -> Positions {
    let mut out = Positions::EMPTY;
    for i in cur.iter(s.len()) {
        if i < s.len() && ok(s[i]) {
            out.insert(i + 1);
        }
    }
    out
}

/// `{a,b,c}`: advances every position past any alternative that follows it literally.
fn alternatives(cur: Positions, s: &[u8], list: &[u8]) -> Positions {
    let mut out = Positions::EMPTY;
    for alt in list.split(|&b| b == b',') {
        for i in cur.iter(s.len()) {
            if s[i..].starts_with(alt) {
                out.insert(i + alt.len());
            }
        }
    }
    out
}

/// The index of the `]` closing the class that opens at `open`. A `]` right after `[` or
/// `[!` is a member, not the end.
fn class_end(pattern: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if pattern.get(i) == Some(&b'!') {
        i += 1;
    }
    if pattern.get(i) == Some(&b']') {
        i += 1;
    }
    pattern[i..].iter().position(|&b| b == b']').map(|p| i + p)
}

/// Membership in a class body (between the brackets): members, `a-z` ranges, `!` negation;
/// a `-` first or last is a literal.
fn class_contains(body: &[u8], c: u8) -> bool {
    let (negate, body) = match body.split_first() {
        Some((b'!', rest)) => (true, rest),
        _ => (false, body),
    };
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == b'-' {
            found |= (body[i]..=body[i + 2]).contains(&c);
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    found != negate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_wildcards() {
        assert!(matches("/a/speed", "/a/speed"));
        assert!(!matches("/a/speed", "/a/speed2"));
        assert!(matches("/a/sp?ed", "/a/speed"));
        assert!(matches("/*/speed", "/aurora/speed"));
        assert!(!matches("/*", "/aurora/speed"), "* does not cross /");
        assert!(matches("/a/*", "/a/x"));
        assert!(matches("/a/s*d", "/a/speed"));
        assert!(matches("/a/*e*e*", "/a/speed"));
        assert!(!matches("/a/*x*", "/a/speed"));
        assert!(matches("/a/**", "/a/"), "empty part");
    }

    #[test]
    fn classes() {
        assert!(matches("/fader[1-3]", "/fader2"));
        assert!(!matches("/fader[1-3]", "/fader4"));
        assert!(matches("/fader[!1-3]", "/fader4"));
        assert!(!matches("/fader[!1-3]", "/fader1"));
        assert!(matches("/x[abc]", "/xb"));
        assert!(matches("/x[a-]", "/x-"));
        assert!(matches("/x[]a]", "/x]"));
        assert!(!matches("/x[ab", "/xa"), "unclosed class matches nothing");
    }

    #[test]
    fn alternatives_work() {
        assert!(matches("/{aurora,tide}/speed", "/tide/speed"));
        assert!(!matches("/{aurora,tide}/speed", "/dune/speed"));
        assert!(matches("/a/{sp,s}eed", "/a/speed"));
        assert!(matches("/a/{,x}speed", "/a/speed"), "empty alternative");
        assert!(!matches("/a/{sp", "/a/sp"));
        assert!(!matches("/a/sp}", "/a/sp"));
    }

    #[test]
    fn hostile_patterns_finish() {
        let star = "/".to_string() + &"*a".repeat(2000);
        let long = "/".to_string() + &"a".repeat(250);
        assert!(!matches(&(star.clone() + "b"), &long));
        assert!(matches(&star[..star.len().min(400)], &long));
        let braces = "/".to_string() + &"{a,aa,aaa}".repeat(300);
        assert!(!matches(&braces, &(long.clone() + "b")));
        let over = "/".to_string() + &"a".repeat(MAX_PART + 1);
        assert!(!matches("/*", &over), "long parts only match literally");
        assert!(matches(&over, &over));
    }

    #[test]
    fn is_pattern_detects_syntax() {
        assert!(!is_pattern("/a/speed"));
        for p in ["/a?", "/a*", "/[a]", "/{a}", "/]", "/}"] {
            assert!(is_pattern(p), "{p}");
        }
    }
}
