//! Small helpers shared by the attribute enums: fixed-width integer
//! emitters and parsers that name the attribute in their errors.

use netlink_packet_core::{DecodeError, ErrorContext, NlaBuffer, NlasIterator, Parseable};

/// Parses every attribute of a nest with `P`, naming the nest on error.
pub(crate) fn parse_nest<P>(payload: &[u8], what: &str) -> Result<Vec<P>, DecodeError>
where
    P: for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    let mut out = Vec::new();
    for nla in NlasIterator::new(payload) {
        let nla = nla.with_context(|| format!("malformed attribute in {what}"))?;
        out.push(P::parse(&nla).with_context(|| format!("invalid attribute in {what}"))?);
    }
    Ok(out)
}

/// The kind of an attribute and its value, borrowed from the buffer the
/// attribute was read from (not from the `NlaBuffer`).
pub(crate) fn kind_and_value(nla: NlaBuffer<&[u8]>) -> (u16, &[u8]) {
    let kind = nla.kind();
    let len = usize::from(nla.length());
    // `NlasIterator` checked that 4 <= length <= the buffer's length.
    let value = nla.into_inner().get(4..len).unwrap_or_default();
    (kind, value)
}

/// Reads a value that must be exactly `N` bytes long.
pub(crate) fn exact<const N: usize>(payload: &[u8], what: &str) -> Result<[u8; N], DecodeError> {
    payload.try_into().map_err(|_| {
        DecodeError::from(format!("{what}: expected {N} bytes, got {}", payload.len()))
    })
}

pub(crate) fn u8_of(payload: &[u8], what: &str) -> Result<u8, DecodeError> {
    Ok(exact::<1>(payload, what)?[0])
}

pub(crate) fn u16_ne(payload: &[u8], what: &str) -> Result<u16, DecodeError> {
    Ok(u16::from_ne_bytes(exact(payload, what)?))
}

pub(crate) fn u16_be(payload: &[u8], what: &str) -> Result<u16, DecodeError> {
    Ok(u16::from_be_bytes(exact(payload, what)?))
}

pub(crate) fn u32_ne(payload: &[u8], what: &str) -> Result<u32, DecodeError> {
    Ok(u32::from_ne_bytes(exact(payload, what)?))
}

/// A counter that the kernel sends as 32 or 64 bits depending on the nest.
pub(crate) fn u32_or_u64_ne(payload: &[u8], what: &str) -> Result<u64, DecodeError> {
    match payload.len() {
        4 => Ok(u64::from(u32_ne(payload, what)?)),
        8 => Ok(u64::from_ne_bytes(exact(payload, what)?)),
        n => Err(DecodeError::from(format!(
            "{what}: expected 4 or 8 bytes, got {n}"
        ))),
    }
}

/// A NUL-terminated string attribute (the terminator is optional on input).
pub(crate) fn string(payload: &[u8], what: &str) -> Result<String, DecodeError> {
    let bytes = match payload.iter().position(|&b| b == 0) {
        Some(end) => &payload[..end],
        None => payload,
    };
    String::from_utf8(bytes.to_vec())
        .map_err(|e| DecodeError::from(format!("{what}: not UTF-8: {e}")))
}

/// Emits a string with its NUL terminator; `buffer` is `s.len() + 1` long.
pub(crate) fn emit_string(buffer: &mut [u8], s: &str) {
    let (body, nul) = buffer.split_at_mut(s.len());
    body.copy_from_slice(s.as_bytes());
    nul.fill(0);
}
