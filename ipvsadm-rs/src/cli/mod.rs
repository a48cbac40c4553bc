//! From argv to a typed command: our extensions around a 1.31 command
//! line ([`args`]), then ipvsadm 1.31's rules: a popt-like walker
//! ([`popt`]), the one option table ([`options`]), the C parsers ipvsadm
//! relies on ([`cparse`]) and the semantics of its `parse_options` and
//! `process_options` ([`mod@parse`]). `-h`, the man page and the shell
//! completions come from the same table ([`generate`]).

pub mod args;
pub mod cparse;
#[cfg(feature = "k8s-file")]
pub mod from_k8s;
pub mod generate;
pub mod options;
pub mod parse;
pub mod popt;

pub use parse::{parse, Cmd, Entry, Stop};
