#!/usr/bin/env bash
# Entry point on a fresh machine (Debian 12, root): installs the toolchain hoop builds with, if
# missing, then runs `cargo xtask "$@"` with it. See ../shared/docs/TOOLCHAIN.md for why these.
#   xtask/bootstrap.sh run      build eBPF + hoopd and run hoopd on the embedded default config
#   xtask/bootstrap.sh test     install test dependencies, build, run the whole test suite
#   xtask/bootstrap.sh bench    benchmarks (ratios against baselines measured in the same run)
#   xtask/bootstrap.sh fuzz     libFuzzer targets on the stable toolchain (--seconds N, targets)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "bootstrap.sh: run as root (apt, eBPF, cgroups, nftables need it)" >&2
  exit 1
fi

# Debian's rustc-web (1.96, LLVM 22) + precompiled core for bpfel + LLVM 22 for bpf-linker.
# libclang-dev: bindgen in pg_query's build (libpg_query, PostgreSQL's own parser).
PKGS=(rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev libclang-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's toolchain first on PATH: rustup's proxies in ~/.cargo/bin (no bpfel core) must not win.
TOOLS=${HOOP_TOOLS:-/opt/hoop-tools}
export PATH="$TOOLS/bin:/usr/bin:/usr/sbin:/bin:/sbin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc

if ! bpf-linker --version 2>/dev/null | grep -q '0\.13\.0'; then
  echo "bootstrap: installing bpf-linker 0.13.0 (llvm-22) into $TOOLS" >&2
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked --root "$TOOLS" bpf-linker@0.13.0 \
    --no-default-features --features llvm-22 -q
fi

exec cargo xtask "$@"
