#!/usr/bin/env bash
# The whole test suite, as the README gives it and CI runs it.
#
# Builds the mock libnrt first (the runtime tests load it by path, exactly as they would load
# the real library), then runs every test, doctest and walkthrough of the workspace against it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Downloads and caches made by tests (for example the default model) stay inside target/, so a
# CI run fetches them once and later steps of the same run reuse them.
export NEURON_DECODE_HOME="${NEURON_DECODE_HOME:-$root/target/neuron-decode-home}"

if [ -x scripts/build-mock.sh ]; then
    eval "$(scripts/build-mock.sh)"
fi

cargo test --workspace --all-targets "$@"
cargo test --workspace --doc

# The mock's kernels run the widest vector instructions the CPU has; their tests run again on
# the narrower paths, so that every path is checked on any x86_64 machine (each must give the
# same bits as the definition).
for simd in avx2 none; do
    echo "neuron-mock kernels with NEURON_MOCK_SIMD=$simd"
    NEURON_MOCK_SIMD=$simd cargo test --quiet -p neuron-mock --lib kernels
done

# On a CPU with AMX or AVX-512 BF16, the decoding-exactness tests run again with the mock's
# weight products in bf16 (NEURON_MOCK_MATMUL=bf16): speculative decoding must still equal
# greedy decoding token for token (the artifacts compiled then hold bf16 matrices), and bf16
# matrices must give the bits of f32 ones. (The tests that compare logits with the f64
# reference need f32 products.)
if { grep -qw amx_bf16 /proc/cpuinfo && grep -qw amx_tile /proc/cpuinfo; } ||
    grep -qw avx512_bf16 /proc/cpuinfo; then
    echo "parallel-decode exactness with NEURON_MOCK_MATMUL=bf16"
    NEURON_MOCK_MATMUL=bf16 cargo test --quiet -p parallel-decode --test device -- \
        equals_greedy_decoding decode_exactly bf16_matrices
fi

# The numbered walkthroughs (examples/examples/NN-*.rs) run against the mock too.
for walkthrough in examples/examples/[0-9][0-9]-*.rs; do
    name=$(basename "$walkthrough" .rs)
    echo "walkthrough $name"
    cargo run --quiet -p neuron-examples --example "$name" >/dev/null
done
