#!/usr/bin/env bash
# Installs the mock libnrt as DIR/libnrt.so.1 (its soname) with a DIR/libnrt.so symlink, so
# that any program linked with -lnrt, or opening libnrt.so.1, runs on it:
#
#   scripts/install-mock.sh DIR [--release]
#   gcc app.c -I neuron-sys/include -L DIR -lnrt -o app && LD_LIBRARY_PATH=DIR ./app
#
# Builds the library first if needed (scripts/build-mock.sh). Prints the installed path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

dir=""
build_args=()
for arg in "$@"; do
    case "$arg" in
        --release) build_args+=(--release) ;;
        -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "install-mock: unknown option $arg" >&2; exit 2 ;;
        *) dir="$arg" ;;
    esac
done
if [ -z "$dir" ]; then
    echo "usage: scripts/install-mock.sh DIR [--release]" >&2
    exit 2
fi

eval "$("$root/scripts/build-mock.sh" "${build_args[@]}")"
mkdir -p "$dir"
install -m 0755 "$NEURON_SYS_LIB" "$dir/libnrt.so.1.tmp"
mv -f "$dir/libnrt.so.1.tmp" "$dir/libnrt.so.1"
ln -sfn libnrt.so.1 "$dir/libnrt.so"
echo "$(cd "$dir" && pwd)/libnrt.so.1"
