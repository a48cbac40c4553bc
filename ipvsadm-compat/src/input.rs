//! Bounded reading of what the tools take in whole: a rules file of
//! `--apply`/`--diff`, a dump of `--from-k8s`, the input of Debian's
//! `ipvsadm-restore`. (`-R` streams its lines in constant memory and needs
//! no bound: ipvsadm-rs's commands/restore.rs.) Endless input (a
//! pipe that never ends, `/dev/zero`) is refused with a clear error once
//! it passes the bound, instead of growing the process until the OOM
//! killer ends it.
//!
//! The bound is [`DEFAULT_MAX_INPUT`] bytes unless the environment
//! variable [`MAX_INPUT_ENV`] says otherwise (a count of bytes, with an
//! optional `K`, `M` or `G` suffix for powers of 1024).

use std::io::{self, Read};

/// The environment variable that overrides [`DEFAULT_MAX_INPUT`].
pub const MAX_INPUT_ENV: &str = "IPVSADM_RS_MAX_INPUT";

/// The bound unless [`MAX_INPUT_ENV`] says otherwise: 64 MiB, more than a
/// `kubectl get -o json` dump of a cluster of 10,000 Services, and little
/// enough for a node of 512 MiB to refuse endless input (the refusal
/// holds the bound and one chunk of [`CHUNK`] bytes, no more).
pub const DEFAULT_MAX_INPUT: u64 = 64 << 20;

/// The size of the pieces [`read_all`] reads in.
pub const CHUNK: usize = 1 << 20;

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
///
/// The input is read in pieces of [`CHUNK`] bytes, each allocated at its
/// size, and joined at the end into one allocation of the exact length,
/// each piece freed once copied: memory never holds more than the bytes
/// read and one piece (a vector grown by doubling would hold up to twice
/// the bound, and copy it on each growth).
pub fn read_all(input: &mut dyn Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    loop {
        let left = limit.saturating_add(1).saturating_sub(total);
        let want = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        if want == 0 {
            return Ok(None);
        }
        let mut piece = Vec::with_capacity(want);
        (&mut *input).take(want as u64).read_to_end(&mut piece)?;
        if piece.is_empty() {
            break;
        }
        total += piece.len() as u64;
        if total > limit {
            return Ok(None);
        }
        pieces.push(piece);
    }
    if pieces.len() == 1 {
        return Ok(pieces.pop());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(usize::MAX));
    for piece in pieces {
        bytes.extend_from_slice(&piece);
    }
    Ok(Some(bytes))
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
    }

    /// Endless bytes, counting what was read and the largest read asked.
    struct Counted(u64, usize);

    impl Read for Counted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(7);
            self.0 += buf.len() as u64;
            self.1 = self.1.max(buf.len());
            Ok(buf.len())
        }
    }

    #[test]
    fn endless_input_is_read_in_pieces_up_to_one_byte_past_the_bound() {
        let mut r = Counted(0, 0);
        assert_eq!(read_all(&mut r, 3 * CHUNK as u64 + 5).unwrap(), None);
        assert_eq!(r.0, 3 * CHUNK as u64 + 6);
        assert!(r.1 <= CHUNK);
        // A long input within the bound is read whole, in one allocation
        // of its length.
        let text: Vec<u8> = (0..2 * CHUNK + 3).map(|i| (i % 251) as u8).collect();
        let read = read_all(&mut &text[..], text.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!((read.len(), read.capacity()), (text.len(), text.len()));
        assert!(read == text);
    }

    #[test]
    fn input_within_the_bound_is_read_whole() {
        let text = b"-A -t 10.0.0.1:80\n-a\n";
        assert_eq!(
            read_all(&mut &text[..], text.len() as u64).unwrap(),
            Some(text.to_vec())
        );
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
