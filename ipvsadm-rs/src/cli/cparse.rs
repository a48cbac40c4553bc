//! The C library's number and address parsers, as ipvsadm relies on
//! them: `strtol`, `atoi`, `inet_aton`, `inet_pton`, `gethostbyname`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// `strtol(s, &end, 10)`: the value (saturated as on overflow, with the
/// overflow flagged) and the number of bytes consumed (0 when no digits).
fn strtol10(s: &str) -> (i64, bool, usize) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut val: i64 = 0;
    let mut overflow = false;
    while i < b.len() && b[i].is_ascii_digit() {
        let d = i64::from(b[i] - b'0');
        match val.checked_mul(10).and_then(|v| {
            if neg {
                v.checked_sub(d)
            } else {
                v.checked_add(d)
            }
        }) {
            Some(v) => val = v,
            None => {
                overflow = true;
                val = if neg { i64::MIN } else { i64::MAX };
            }
        }
        i += 1;
    }
    if i == start {
        return (0, false, 0);
    }
    (val, overflow, i)
}

/// ipvsadm's `string_to_number`: a whole decimal string within
/// `min..=max`, else `None`.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    let (v, overflow, used) = strtol10(s);
    (used > 0 && used == s.len() && !overflow && min <= v && v <= max).then_some(v)
}

/// ipvsadm's `parse_fwmark`: 1 to 4294967295.
pub fn parse_fwmark(s: &str) -> Option<u32> {
    let (v, overflow, used) = strtol10(s);
    // The C code stores strtol's result in an unsigned long: a negative
    // value becomes huge and fails the range check.
    if used == 0 || used != s.len() || overflow || v <= 0 || v > i64::from(u32::MAX) {
        return None;
    }
    u32::try_from(v).ok()
}

/// `atoi`: leading digits, 0 when there are none.
pub fn atoi(s: &str) -> i64 {
    let (v, _, _) = strtol10(s);
    v
}

/// `strtoul(s, &end, 0)` on a string that starts with a digit: the value
/// and the bytes consumed.
fn strtoul0(s: &[u8]) -> (u64, usize) {
    let (base, mut i) =
        if s.len() > 2 && s[0] == b'0' && (s[1] | 0x20) == b'x' && s[2].is_ascii_hexdigit() {
            (16, 2)
        } else if s[0] == b'0' {
            (8, 0)
        } else {
            (10, 0)
        };
    let mut val: u64 = 0;
    while i < s.len() {
        let d = match (s[i] as char).to_digit(base) {
            Some(d) => u64::from(d),
            None => break,
        };
        val = val.saturating_mul(u64::from(base)).saturating_add(d);
        i += 1;
    }
    (val, i)
}

/// glibc's `inet_aton`: `a`, `a.b`, `a.b.c` or `a.b.c.d`, each part
/// decimal, octal (leading 0) or hex (0x); trailing whitespace allowed.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    let mut i = 0;
    let last;
    loop {
        if i >= b.len() || !b[i].is_ascii_digit() {
            return None;
        }
        let (val, used) = strtoul0(&b[i..]);
        if val > 0xffff_ffff {
            return None;
        }
        i += used;
        if i < b.len() && b[i] == b'.' {
            if parts.len() > 2 || val > 0xff {
                return None;
            }
            parts.push(val);
            i += 1;
        } else {
            last = val;
            break;
        }
    }
    if i < b.len() && !is_c_space(b[i]) {
        return None;
    }
    let max: [u64; 4] = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff];
    if last > max[parts.len()] {
        return None;
    }
    let mut addr: u64 = last;
    for (k, p) in parts.iter().enumerate() {
        addr |= p << (24 - 8 * k);
    }
    Some(Ipv4Addr::from(addr as u32))
}

/// `inet_pton(AF_INET, ...)`: exactly four decimal parts.
pub fn inet_pton4(s: &str) -> Option<Ipv4Addr> {
    // Rust's parser is as strict as inet_pton: no leading zeros beyond a
    // single 0, four parts, nothing else.
    s.parse().ok()
}

/// `inet_pton(AF_INET6, ...)`.
pub fn inet_pton6(s: &str) -> Option<Ipv6Addr> {
    s.parse().ok()
}

/// `gethostbyname`: the first IPv4 address of a host name.
pub fn host_to_addr(name: &str) -> Option<Ipv4Addr> {
    if name.is_empty() {
        return None;
    }
    (name, 0)
        .to_socket_addrs()
        .ok()?
        .find_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
}

/// The port of a service name in /etc/services for `proto` ("tcp",
/// "udp", "sctp"), as `getservbyname` finds it: the first line whose name
/// or alias matches.
pub fn service_to_port(name: &str, proto: &str) -> Option<u16> {
    let text = std::fs::read_to_string("/etc/services").ok()?;
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let first = words.next()?;
        let (port, pr) = words.next()?.split_once('/')?;
        if pr != proto {
            return None;
        }
        let matches = first == name || words.any(|alias| alias == name);
        if matches {
            port.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_number_is_strtol_with_a_range() {
        assert_eq!(string_to_number("42", 0, 100), Some(42));
        assert_eq!(string_to_number(" +42", 0, 100), Some(42));
        assert_eq!(string_to_number("42x", 0, 100), None);
        assert_eq!(string_to_number("", 0, 100), None);
        assert_eq!(string_to_number("-1", 0, 100), None);
        assert_eq!(string_to_number("99999999999999999999", 0, i64::MAX), None);
    }

    #[test]
    fn fwmark_range() {
        assert_eq!(parse_fwmark("4294967295"), Some(u32::MAX));
        assert_eq!(parse_fwmark("4294967296"), None);
        assert_eq!(parse_fwmark("0"), None);
        assert_eq!(parse_fwmark("-5"), None);
        assert_eq!(parse_fwmark("7 "), None);
    }

    #[test]
    fn inet_aton_accepts_the_old_forms() {
        let a = |s: &str| inet_aton(s).map(|a| a.to_string());
        assert_eq!(a("10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(a("10.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("10.1.258").as_deref(), Some("10.1.1.2"));
        assert_eq!(a("0x0a.010.0.1").as_deref(), Some("10.8.0.1"));
        assert_eq!(a("167772161").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("1.2.3.4 ").as_deref(), Some("1.2.3.4"));
        assert_eq!(a("256.1.1.1"), None);
        assert_eq!(a("1.2.3.4.5"), None);
        assert_eq!(a("08.1.1.1"), None);
        assert_eq!(a("1.2.3."), None);
        assert_eq!(a("a.b.c.d"), None);
        assert_eq!(a(""), None);
    }

    #[test]
    fn atoi_reads_leading_digits() {
        assert_eq!(atoi("64abc"), 64);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi(" -3"), -3);
    }
}
