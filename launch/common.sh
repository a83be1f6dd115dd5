# Shared by the launch scripts: system packages, the build, and this machine's MPI flags.
# shellcheck shell=bash
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(libopenmpi-dev openmpi-bin libopenblas-dev liblapacke-dev libdnnl-dev pkg-config)

# Installs the Debian packages the build needs, only when one is missing (apt-get update once).
ensure_packages() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v swift >/dev/null || { echo "swift not found on PATH (Swift 6 toolchain needed)" >&2; exit 1; }
}

# Builds the release binary; prints its path.
build_release() {
    (cd "$ROOT" && swift build -c release --product gradmap-dist >&2)
    echo "$ROOT/.build/release/gradmap-dist"
}
