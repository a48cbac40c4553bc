//! From argv to a typed command: our extensions around a 1.31 command
//! line ([`args`]), then ipvsadm 1.31's rules: a popt-like walker
//! ([`popt`]), the one option table ([`options`]), the C parsers ipvsadm
//! relies on ([`cparse`]) and the semantics of its `parse_options` and
//! `process_options` ([`mod@parse`]); the lines `-S` prints, read
//! straight to their write for a restore ([`saved`]). The options after `--from-k8s` are
//! read by `from_k8s` (feature `k8s-file`) from the same table, and `-h`,
//! the man page and the shell completions are generated from it
//! ([`generate`]).

pub mod args;
pub mod cparse;
#[cfg(feature = "k8s-file")]
pub mod from_k8s;
pub mod generate;
pub mod options;
pub mod parse;
pub mod popt;
pub mod saved;
pub mod top;

pub use parse::{parse, Cmd, Entry, Stop};
