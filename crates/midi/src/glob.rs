//! Port name globs of `[midi] inputs`: `*` (any run of characters) and `?` (one character).

/// Whether `name` matches `pattern` as a whole. Characters other than `*` and `?` match
/// themselves; there is no escaping (port names do not contain these characters in practice).
///
/// Iterative with one backtracking point, so it is linear in practice and never recurses.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // The position after the last `*` seen, and the name position it is currently matched to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and try again from there.
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    pi = sp;
                    ni = sn + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
