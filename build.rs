//! Embeds the git revision the binary is built from (`PARAMX_GIT_REVISION`, read by
//! `run::manifest::build_revision`), so every run manifest names the code that made it.
//! Outside a git checkout (a source tarball, `cargo install` from crates.io) nothing is set and
//! the manifest says "unknown": the build never fails for want of git.
//!
//! With the `cuda` feature it also compiles the fused kernels (`src/model/fused/kernels.cu`) to
//! PTX with nvcc, for `CUDA_COMPUTE_CAP` (default 80: runs on A100 and, JIT-compiled, on
//! H100/H200), the way candle-kernels builds its own. The CPU build needs no CUDA at all.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// `nvcc --ptx` of the fused kernels into `$OUT_DIR/paramx_kernels.ptx`.
fn compile_kernels() {
    let src = "src/model/fused/kernels.cu";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let ptx = std::path::Path::new(&out_dir).join("paramx_kernels.ptx");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let nvcc = match std::env::var("CUDA_HOME") {
        Ok(home) => std::path::Path::new(&home).join("bin").join("nvcc"),
        Err(_) => "nvcc".into(),
    };
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("-o")
        .arg(&ptx)
        .arg(src)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("nvcc failed on {src} ({s}): see its messages above"),
        Err(e) => panic!(
            "cannot run {} for {src}: {e} (source ../shared/scripts/cuda13-build-env.sh first)",
            nvcc.display()
        ),
    }
}

fn main() {
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_kernels();
    }
    // Rerun when the checked-out commit moves or the sources change (to refresh "-dirty").
    println!("cargo:rerun-if-changed=src");
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
