#!/usr/bin/env bash
# CI's fuzzing step (called by .ci/run after `cargo test --workspace`, which already
# replays every committed corpus): build every cargo-fuzz target once, then run each
# for a bounded time on a temporary copy of its corpus. Fails when a target crashes,
# hangs or runs out of memory, and prints the input that did it.
#
#   FUZZ_SECONDS     seconds per target (default 20)
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 10)
#   FUZZ_TARGETS     space-separated targets to run (default: every target)
#   FUZZ_TOOLCHAIN   the rustup toolchain to build with (default stable; nightly works)
#   FUZZ_PROFILE     dev (default) or release: how the targets are built
#
# The build dominates the step's time, and CI starts with a cold fuzz/target. On the
# shared 2-core development machine, cargo-fuzz's default release build took 828 s of
# wall time (10 min 20 s of CPU) and the dev build 382 s (under 5 min of CPU): the
# whole step took 15 min 20 s against 8 min (fuzz/README.md has the figures). The dev
# build runs inputs 10 to 30 times slower, yet a 20-second run still replays the whole
# corpus under AddressSanitizer with overflow checks and tries thousands of new inputs,
# which is what CI is for; long hunts use FUZZ_PROFILE=release or `cargo fuzz run`.
#
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
timeout="${FUZZ_TIMEOUT:-10}"
toolchain="${FUZZ_TOOLCHAIN:-stable}"
# `cargo fuzz run` takes the build options too: the same ones, or it builds again.
case "${FUZZ_PROFILE:-dev}" in
    dev) build_options=(--dev) ;;
    release) build_options=() ;;
    *) echo "fuzz: FUZZ_PROFILE is dev or release, not ${FUZZ_PROFILE}" >&2; exit 2 ;;
esac

cargo_fuzz=(cargo)
if command -v rustup >/dev/null; then cargo_fuzz=(cargo "+$toolchain"); fi
export RUSTC_BOOTSTRAP=1

if ! "${cargo_fuzz[@]}" fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

started=$(date +%s)
echo "fuzz: building every target, ${FUZZ_PROFILE:-dev} profile ($("${cargo_fuzz[@]}" --version))"
"${cargo_fuzz[@]}" fuzz build ${build_options[@]+"${build_options[@]}"}
built=$(date +%s)
echo "fuzz: built in $((built - started)) s"

read -r -a targets <<<"${FUZZ_TARGETS:-$("${cargo_fuzz[@]}" fuzz list | tr '\n' ' ')}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    mkdir -p "$corpus"
    if [ -d "corpus/$target" ]; then cp -R "corpus/$target/." "$corpus/"; fi
    options=("-max_total_time=$seconds" "-timeout=$timeout" -print_final_stats=1)
    if [ -f "dictionaries/$target.dict" ]; then options+=("-dict=dictionaries/$target.dict"); fi
    log="$work/$target.log"
    echo "fuzz: $target for ${seconds} s ($(find "$corpus" -type f | wc -l) seeds)"
    status=0
    "${cargo_fuzz[@]}" fuzz run ${build_options[@]+"${build_options[@]}"} "$target" "$corpus" -- "${options[@]}" >"$log" 2>&1 || status=$?
    runs=$(grep -oE '^Done [0-9]+ runs' "$log" | tail -n 1 | grep -oE '[0-9]+' || true)
    if [ "$status" -eq 0 ]; then
        summary+=("$target: ${runs:-?} runs in ${seconds} s, corpus $(find "$corpus" -type f | wc -l)")
    else
        failed+=("$target")
        summary+=("$target: FAILED (exit $status)")
        echo "fuzz: $target failed; the end of its log:"
        tail -n 60 "$log"
        # libFuzzer names the input it saved on a `Test unit written to` line.
        grep -oE 'Test unit written to .*' "$log" | sed "s|^|fuzz: $target: |" || true
    fi
done

echo "fuzz: summary (build $((built - started)) s, total $(($(date +%s) - started)) s)"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <input>)"
    exit 1
fi
