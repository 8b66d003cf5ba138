//! Embeds the git revision the binary is built from (`PARAMX_GIT_REVISION`, read by
//! `run::manifest::build_revision`), so every run manifest names the code that made it.
//! Outside a git checkout (a source tarball, `cargo install` from crates.io) nothing is set and
//! the manifest says "unknown": the build never fails for want of git. The engine's CUDA kernels
//! are built by `crates/engine/build.rs`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    // Rerun when the checked-out commit moves or the sources change (to refresh "-dirty").
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=crates");
    println!("cargo:rerun-if-changed=Cargo.toml");
    for name in ["HEAD", "index"] {
        if let Some(p) = git(&["rev-parse", "--git-path", name]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    let Some(rev) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
    println!(
        "cargo:rustc-env=PARAMX_GIT_REVISION={rev}{}",
        if dirty { "-dirty" } else { "" }
    );
}
