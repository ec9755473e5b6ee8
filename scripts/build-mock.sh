#!/usr/bin/env bash
# Builds the mock libnrt (the neuron-mock crate's cdylib) and prints the line that points
# neuron-sys at it, so that the usual use is:
#
#   eval "$(scripts/build-mock.sh)"          # then cargo test, cargo run, ...
#   scripts/build-mock.sh --release          # the same with the release profile
#
# Only the export line goes to standard output; cargo's progress and errors go to standard
# error. When the library is up to date, cargo's own check makes this take well under a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

profile_args=()
for arg in "$@"; do
    case "$arg" in
        --release) profile_args+=(--release) ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-mock: unknown argument $arg (use --release or nothing)" >&2; exit 2 ;;
    esac
done

# The JSON messages name the files cargo produced, wherever the target directory is.
artifacts=$(cargo build -p neuron-mock --lib "${profile_args[@]}" --message-format=json-render-diagnostics)
lib=$(printf '%s\n' "$artifacts" | grep -o '"[^"]*/libneuron_mock\.so"' | tail -n 1 | tr -d '"')
if [ -z "$lib" ] || [ ! -f "$lib" ]; then
    echo "build-mock: cargo did not report libneuron_mock.so" >&2
    exit 1
fi
printf 'export NEURON_SYS_LIB=%q\n' "$lib"
