#!/usr/bin/env bash
# Installs the mock libnrt as DIR/libnrt.so.1 (its soname) with a DIR/libnrt.so symlink, so
# that any program linked with -lnrt, or opening libnrt.so.1, runs on it:
#
#   scripts/install-mock.sh DIR [--release]
#   scripts/install-mock.sh DIR --lib PATH   # install an already built libneuron_mock.so
#   gcc app.c -I neuron-sys/include -L DIR -lnrt -o app && LD_LIBRARY_PATH=DIR ./app
#
# Builds the library first if needed (scripts/build-mock.sh). Prints the installed path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

dir=""
lib=""
build_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --release) build_args+=(--release) ;;
        --lib) lib="${2:-}"; shift ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "install-mock: unknown option $1" >&2; exit 2 ;;
        *) dir="$1" ;;
    esac
    shift
done
if [ -z "$dir" ]; then
    echo "usage: scripts/install-mock.sh DIR [--release | --lib PATH]" >&2
    exit 2
fi

if [ -z "$lib" ]; then
    eval "$("$root/scripts/build-mock.sh" "${build_args[@]}")"
    lib="$NEURON_SYS_LIB"
fi
if [ ! -f "$lib" ]; then
    echo "install-mock: $lib does not exist" >&2
    exit 1
fi
mkdir -p "$dir"
install -m 0755 "$lib" "$dir/libnrt.so.1.tmp"
mv -f "$dir/libnrt.so.1.tmp" "$dir/libnrt.so.1"
ln -sfn libnrt.so.1 "$dir/libnrt.so"
echo "$(cd "$dir" && pwd)/libnrt.so.1"
