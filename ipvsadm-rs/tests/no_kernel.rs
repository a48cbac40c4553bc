//! Under its own name, `ipvsadm-rs` shows its help, version and man
//! page (that they need no kernel is `cli::args::without_kernel`'s unit
//! test: they are answered before IPVS is opened; under the name
//! `ipvsadm` they stay behind 1.31's start-up, which the VM differential
//! suites compare with the real ipvsadm).

use std::process::Command;

fn ours(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipvsadm-rs"))
        .args(args)
        .output()
        .expect("run ipvsadm-rs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_help_and_man_under_our_own_name() {
    let (code, version, err) = ours(&["--version"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let first = format!("ipvsadm-rs {} (features: ", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&first), "{version}");
    // The ipvsadm whose behaviour it reproduces, as `ipvsadm -v` words it.
    assert!(version.ends_with(
        "compatible with ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
    ));
    for v in ["-V", "-v"] {
        assert_eq!(ours(&[v]), (Some(0), version.clone(), String::new()), "{v}");
    }
    let (code, help, err) = ours(&["-h"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert!(help.contains("\n  --version      -V|-v "), "{help}");
    assert_eq!(ours(&["--help"]).1, help);
    let (code, man, _) = ours(&["--man"]);
    assert_eq!(code, Some(0));
    assert!(man.starts_with(".TH"), "{man}");
}
