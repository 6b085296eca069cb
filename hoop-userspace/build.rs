//! Embeds the eBPF object built by `cargo xtask build-ebpf` (aya-build is not used: it strips
//! RUSTC and calls `rustup run nightly`, which cannot build for bpfel here; see TOOLCHAIN.md).

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hoop_ebpf_embedded)");
    println!("cargo::rerun-if-env-changed=HOOP_EBPF_OBJ");
    let path = std::env::var_os("HOOP_EBPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
            manifest.join("../target/bpfel-unknown-none/release/hoop-ebpf")
        });
    println!("cargo::rerun-if-changed={}", path.display());
    if path.exists() {
        println!(
            "cargo::rustc-env=HOOP_EBPF_OBJ={}",
            path.canonicalize().unwrap().display()
        );
        println!("cargo::rustc-cfg=hoop_ebpf_embedded");
    } else {
        println!(
            "cargo::warning=no eBPF object at {}: hoopd will refuse to start; build with `cargo xtask build`",
            path.display()
        );
    }
}
