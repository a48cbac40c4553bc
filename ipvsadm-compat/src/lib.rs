//! What tools that stand in for ipvsadm 1.31 share of its conventions,
//! apart from the libraries (which return typed values and typed errors):
//!
//! - [`rules`]: a write as the `ipvsadm -R` line that makes it, and the
//!   pieces `-S` shares with it;
//! - [`messages`]: ipvsadm's words for the kernel's errors (libipvs's
//!   `ipvs_strerror`, glibc's `strerror` for the rest);
//! - [`input`]: bounded reading of the inputs read whole (rules files,
//!   dumps), the bound from `IPVSADM_RS_MAX_INPUT`.
//!
//! `ipvsadm-rs` and `ipvs-k8s` (whose `--from-k8s` speaks as `ipvsadm-rs`
//! does) use it; a program that only plans and applies needs `ipvs-plan`
//! and `ipvs-netlink` alone.

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod input;
pub mod messages;
pub mod rules;
