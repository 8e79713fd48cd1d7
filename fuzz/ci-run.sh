#!/usr/bin/env bash
# CI's fuzzing step (called by .ci/run after `cargo test --workspace`, which already
# replays every committed corpus): build every cargo-fuzz target once, then run each
# for a bounded time on a temporary copy of its corpus. Fails when a target crashes,
# hangs or runs out of memory, and prints the input that did it; and when it has done
# less than that: `cargo fuzz list` fails or disagrees with fuzz_targets/, a target
# stops before its time (libFuzzer's `Done N runs in S second(s)` must show S at
# least FUZZ_SECONDS), or fewer targets ran than were asked for (every one in CI).
#
#   FUZZ_SECONDS     seconds per target (default 20)
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default 10)
#   FUZZ_TARGETS     space-separated targets to run (default: every target; CI runs all)
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

# Every target there is: `cargo fuzz list` (run on its own, so that its failure stops
# the script; inside a here-string it would not), which must name exactly the files
# in fuzz_targets/. FUZZ_TARGETS narrows the run by hand; CI leaves it unset, and
# then every target must run.
listed=$("${cargo_fuzz[@]}" fuzz list)
read -r -a all_targets <<<"$(echo "$listed" | tr '\n' ' ')"
expected=$(find fuzz_targets -maxdepth 1 -name '*.rs' | wc -l)
if [ "${#all_targets[@]}" -eq 0 ] || [ "${#all_targets[@]}" -ne "$expected" ]; then
    echo "fuzz: \`cargo fuzz list\` names ${#all_targets[@]} targets, fuzz_targets/ holds $expected:" >&2
    echo "$listed" >&2
    exit 1
fi
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    targets=("${all_targets[@]}")
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
completed=()
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
    # libFuzzer's last words on a run that reached -max_total_time:
    # `Done <runs> runs in <seconds> second(s)`.
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    runs=$(echo "$done_line" | awk '{print $2}')
    ran_for=$(echo "$done_line" | awk '{print $5}')
    if [ "$status" -eq 0 ] && { [ -z "$done_line" ] || [ "$runs" -eq 0 ] || [ "$ran_for" -lt "$seconds" ]; }; then
        # Exit 0 without a full run: it stopped early (an option, a corpus problem)
        # and fuzzed less than CI counts on.
        failed+=("$target")
        summary+=("$target: FAILED (ran ${ran_for:-?} s of ${seconds} s, ${runs:-?} runs)")
        echo "fuzz: $target stopped before its ${seconds} s; the end of its log:"
        tail -n 30 "$log"
    elif [ "$status" -eq 0 ]; then
        completed+=("$target")
        summary+=("$target: $runs runs in $ran_for s, corpus $(find "$corpus" -type f | wc -l)")
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
# Every target asked for ran its full time (and, in CI, that is every target).
if [ "${#completed[@]}" -ne "${#targets[@]}" ] || [ "${#completed[@]}" -eq 0 ]; then
    echo "fuzz: ${#completed[@]} of ${#targets[@]} targets ran for ${seconds} s" >&2
    exit 1
fi
echo "fuzz: ${#completed[@]} of ${#all_targets[@]} targets ran for ${seconds} s each"
