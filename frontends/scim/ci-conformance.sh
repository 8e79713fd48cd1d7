#!/usr/bin/env bash
# SCIM conformance: scim2-tester, through scim2-cli's `scim2 test`, against a running
# server. Fails on any ERROR, CRITICAL or SKIPPED result, and on fewer than 100
# SUCCESS results. The suite's versions are pinned in conformance-requirements.txt.
# From .ci/run:
#
#     frontends/scim/ci-conformance.sh
#
# SCIM_CONFORMANCE_SERVER=portcullis (the default) runs `portcullis serve`, whose
# PORTCULLIS_BOOTSTRAP_TOKEN becomes the first system-admin token;
# SCIM_CONFORMANCE_SERVER=example runs this crate's `scim_server` example instead.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The suite's packages, every version pinned (conformance-requirements.txt). A venv
# is reused only when it was built from exactly that file (its copy inside the venv
# says so); otherwise it is rebuilt, so a moved pin takes effect and a venv left by
# an unpinned install is never trusted.
requirements=frontends/scim/conformance-requirements.txt
venv="${SCIM_CONFORMANCE_VENV:-target/scim-conformance-venv}"
if ! cmp -s "$requirements" "$venv/pinned-requirements.txt" || [ ! -x "$venv/bin/scim2" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --requirement "$requirements"
    cp "$requirements" "$venv/pinned-requirements.txt"
fi

port="${SCIM_CONFORMANCE_PORT:-18080}"
url="http://127.0.0.1:$port/scim/v2"
data="$(mktemp -d)"
PORTCULLIS_BOOTSTRAP_TOKEN="scim-conformance-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export PORTCULLIS_BOOTSTRAP_TOKEN

case "${SCIM_CONFORMANCE_SERVER:-portcullis}" in
    portcullis)
        # The binary `cargo test --workspace` builds (the cli's tests run it): the same
        # command with --no-run is a no-op after it, where `cargo build -p portcullis`
        # would resolve features for one package and rebuild half the graph.
        cargo test --quiet --workspace --no-run
        # The suite writes random placeholder passwords (no upper-case letter, some
        # short): it tests the protocol, not a password policy, so the served engine
        # gets a policy those meet, as an operator provisioning from such a client
        # would configure (the default policy refuses them: 400 invalidValue).
        cat >"$data/portcullis.toml" <<'TOML'
[auth.password_policy]
min_length = 1
upper = false
lower = false
digit = false
TOML
        server=("${CARGO_TARGET_DIR:-target}/debug/portcullis" serve --config "$data/portcullis.toml" --data "$data/store" --listen "127.0.0.1:$port")
        ;;
    example)
        cargo build --quiet --profile test -p portcullis-scim --example scim_server
        server=("${CARGO_TARGET_DIR:-target}/debug/examples/scim_server" --data "$data/store" --listen "127.0.0.1:$port")
        ;;
    *)
        echo "SCIM_CONFORMANCE_SERVER must be portcullis or example" >&2
        exit 2
        ;;
esac
"${server[@]}" >"$data/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT

ready=no
for _ in $(seq 150); do
    if curl --silent --fail --output /dev/null \
        -H "Authorization: Bearer $PORTCULLIS_BOOTSTRAP_TOKEN" "$url/ServiceProviderConfig"; then
        ready=yes
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    sleep 0.2
done
if [ "$ready" != yes ]; then
    echo "the server did not serve $url/ServiceProviderConfig; its log:" >&2
    cat "$data/server.log" >&2
    exit 1
fi

report="$data/scim2-test.txt"
status=0
SCIM_CLI_HEADERS="Authorization: Bearer $PORTCULLIS_BOOTSTRAP_TOKEN" \
    "$venv/bin/scim2" --url "$url" test >"$report" 2>&1 || status=$?
cat "$report"
if [ "$status" -ne 0 ] || grep -Eq '^(ERROR|CRITICAL|SKIPPED)' "$report"; then
    echo "SCIM conformance failed (scim2 exited $status)" >&2
    exit 1
fi
# A run that checked (almost) nothing also exits 0 with no failure line: a suite that
# found no resource type, or a report format that changed. The pinned suite makes
# 100 or more checks against this server (SCIM_CONFORMANCE_MIN_SUCCESS to change).
succeeded=$(grep -c '^SUCCESS' "$report" || true)
minimum="${SCIM_CONFORMANCE_MIN_SUCCESS:-100}"
if [ "$succeeded" -lt "$minimum" ]; then
    echo "SCIM conformance failed: $succeeded checks succeeded, fewer than $minimum" >&2
    exit 1
fi
echo "SCIM conformance: $succeeded checks succeeded (at least $minimum required), none failed or skipped"
