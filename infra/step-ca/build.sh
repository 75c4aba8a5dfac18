#!/usr/bin/env bash
# Builds step-ca 0.19 from Debian's packaged source (no network beyond apt).
# Prints the binary's path as the last line of output.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_dir="${here}/.build"
bin="${build_dir}/bin/step-ca"
main_go="${here}/main.go"
gocode=/usr/share/gocode

if [[ -x "${bin}" && "${bin}" -nt "${main_go}" ]]; then
    echo "${bin}"
    exit 0
fi

mkdir -p "${build_dir}/bin" "${build_dir}/gocache"
# Two test runs may build at once; the second waits and then finds the cache.
exec 9>"${build_dir}/.lock"
flock 9
if [[ -x "${bin}" && "${bin}" -nt "${main_go}" ]]; then
    echo "${bin}"
    exit 0
fi

installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)"
    [[ "${status}" == "install ok installed" ]]
}

# gcc/libc6-dev: the badger and zstd dependencies use cgo.
missing=()
for pkg in golang-go golang-github-smallstep-certificates-dev gcc libc6-dev; do
    installed "${pkg}" || missing+=("${pkg}")
done
if ((${#missing[@]} > 0)); then
    echo "installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi

# GOPATH mode needs the main package inside a GOPATH tree; a copy keeps the
# committed main.go the single source.
pkg_dir="${build_dir}/gopath/src/mosaic.local/step-ca"
mkdir -p "${pkg_dir}"
cp "${main_go}" "${pkg_dir}/main.go"

start=${SECONDS}
(
    cd "${pkg_dir}"
    GO111MODULE=off \
        GOPATH="${build_dir}/gopath:${gocode}" \
        GOCACHE="${build_dir}/gocache" \
        GOFLAGS="" \
        go build -o "${bin}.tmp" .
) >&2
# Renamed last so an interrupted build never leaves a binary that looks cached.
mv -f "${bin}.tmp" "${bin}"
echo "built step-ca in $((SECONDS - start))s" >&2
echo "${bin}"
