//! With the `cuda` feature, compiles the fused kernels (`src/model/fused/kernels.cu`) to PTX with
//! nvcc, for `CUDA_COMPUTE_CAP` (default 80: runs on A100 and, JIT-compiled, on H100/H200), the
//! way candle-kernels builds its own. The CPU build needs no CUDA at all.

use std::process::Command;

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
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_kernels();
    }
}
