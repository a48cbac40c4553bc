//! A new network namespace for host tests that talk to the host's kernel
//! (rtnetlink, ctnetlink): nothing of the host's own network is touched.

use std::io::Write;

/// Runs `f` on a thread in a new network namespace; as another user than
/// root, says it skipped and does nothing.
pub(crate) fn in_new_netns(test: &str, f: impl FnOnce() + Send + 'static) {
    if !nix::unistd::geteuid().is_root() {
        let line = format!("SKIPPED {test}: needs root for a network namespace\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("root, yet no network namespace");
        f();
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
}
