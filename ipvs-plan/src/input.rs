//! Bounded reading of what the tools take in: a restore line, a rules
//! file of `--apply`/`--diff`, a dump of `--from-k8s`. Endless input (a
//! pipe that never ends, `/dev/zero`) is refused with a clear error once
//! it passes the bound, instead of growing the process until the OOM
//! killer ends it.
//!
//! The bound is [`DEFAULT_MAX_INPUT`] bytes unless the environment
//! variable [`MAX_INPUT_ENV`] says otherwise (a count of bytes, with an
//! optional `K`, `M` or `G` suffix for powers of 1024).

use std::io::{self, BufRead, Read};

/// The environment variable that overrides [`DEFAULT_MAX_INPUT`].
pub const MAX_INPUT_ENV: &str = "IPVSADM_RS_MAX_INPUT";

/// The bound unless [`MAX_INPUT_ENV`] says otherwise: 256 MiB, several
/// times a `kubectl get -o json` dump of a cluster of 10,000 Services.
pub const DEFAULT_MAX_INPUT: u64 = 256 << 20;

/// Reads a bound: `123`, `64K`, `256M`, `1G`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift).filter(|&n| n > 0)
}

/// The bound in force: [`MAX_INPUT_ENV`] when set, else
/// [`DEFAULT_MAX_INPUT`]; an error naming the variable when it does not
/// read.
pub fn max_input() -> Result<u64, String> {
    match std::env::var(MAX_INPUT_ENV) {
        Ok(v) => parse_size(&v).ok_or_else(|| {
            format!("{MAX_INPUT_ENV}={v:?}: not a size in bytes (such as 268435456 or 256M)")
        }),
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_MAX_INPUT),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{MAX_INPUT_ENV}: not a size in bytes"))
        }
    }
}

/// The error of an input past `limit` bytes.
pub fn too_long(what: &str, limit: u64) -> String {
    format!("{what} is longer than {limit} bytes (the bound is set by {MAX_INPUT_ENV})")
}

/// Reads all of `input`, at most `limit` bytes: `Ok(None)` when it is
/// longer (having read one byte more, no more).
pub fn read_all(input: &mut dyn Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// As [`BufRead::read_until`] with `b'\n'`, appending to `line` at most
/// `limit` bytes: `Ok(None)` when the line goes on past them.
pub fn read_line(
    input: &mut dyn BufRead,
    line: &mut Vec<u8>,
    limit: u64,
) -> io::Result<Option<usize>> {
    let n = input
        .take(limit.saturating_add(1))
        .read_until(b'\n', line)?;
    if n as u64 > limit {
        return Ok(None);
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader of endless bytes, as `/dev/zero` is.
    struct Endless(u8);

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(self.0);
            Ok(buf.len())
        }
    }

    #[test]
    fn endless_input_stops_one_byte_past_the_bound() {
        assert_eq!(read_all(&mut Endless(0), 1000).unwrap(), None);
        let mut r = io::BufReader::new(Endless(b'a'));
        let mut line = Vec::new();
        assert_eq!(read_line(&mut r, &mut line, 1000).unwrap(), None);
        assert_eq!(line.len(), 1001);
    }

    #[test]
    fn input_within_the_bound_is_read_whole() {
        let text = b"-A -t 10.0.0.1:80\n-a\n";
        assert_eq!(
            read_all(&mut &text[..], text.len() as u64).unwrap(),
            Some(text.to_vec())
        );
        let mut r = &text[..];
        let mut line = Vec::new();
        assert_eq!(read_line(&mut r, &mut line, 18).unwrap(), Some(18));
        assert_eq!(line, b"-A -t 10.0.0.1:80\n");
    }

    #[test]
    fn sizes_read_with_their_suffixes() {
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("256m"), Some(256 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999G"), None);
    }
}
