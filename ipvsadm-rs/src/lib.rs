//! The modules of `ipvsadm-rs`, as a library so that the fuzz harness
//! (`fuzz/`) and the cross-crate tests (`tests/`) can drive the command-line
//! parser, the restore reader and the connection-table reader directly.
//! The binary (`main.rs`) is a thin `main` over them; nothing here is a
//! stable API.

// Lints about the shape of a public API do not apply to an internal one.
#![allow(clippy::new_without_default)]

pub mod cli;
pub mod commands;
pub mod format;
pub mod init;
pub mod io;
pub mod names;
pub mod netns;
pub mod resolve;
#[cfg(feature = "top")]
pub mod top;
