//! From argv to a typed command, with ipvsadm 1.31's rules: a popt-like
//! walker ([`popt`]), the one option table ([`options`]), the C parsers
//! ipvsadm relies on ([`cparse`]) and the semantics of its
//! `parse_options` and `process_options` ([`mod@parse`]).

pub mod cparse;
#[cfg(feature = "k8s-file")]
pub mod from_k8s;
pub mod generate;
pub mod options;
pub mod parse;
pub mod popt;

pub use parse::{parse, Cmd, Entry, Stop};
