#!/bin/sh
# Runs inside the fresh Debian 12 container (tests/fresh/fresh_machine.py), from the copied
# checkout, as root, with nothing installed beyond mmdebstrap's minbase: the README's two
# commands, exactly as a user types them.
#   1. scripts/run-local until it says where to look (first upload), then SIGTERM.
#   2. scripts/test: its setup (apt, .venv, pip) and the pytest subset in $FRESH_PYTEST_ARGS.
# Results go to /out (a host folder): run-local.log, run-local.rc, query.json, chromium.html,
# pytest.log, pytest.rc, steps (one "name seconds" line per step).
set -eu

out=/out
: "${FRESH_VM_PORT:?}" "${FRESH_HEALTH_PORT:?}" "${FRESH_PYTEST_ARGS:?}"
t0=$(date +%s)
step() { echo "$1 $(($(date +%s) - t0))" >>"$out/steps"; echo "=== fresh-machine: $1 ($(($(date +%s) - t0))s)"; }

step run-local-start
# Background job of a non-interactive shell: SIGINT is ignored there, so it is stopped with
# SIGTERM, which run-local handles exactly like Ctrl-C.
VM_PORT=$FRESH_VM_PORT HEALTH_PORT=$FRESH_HEALTH_PORT FIRST_UPLOAD_TIMEOUT=120 \
    scripts/run-local >"$out/run-local.log" 2>&1 &
pid=$!
waited=0
until grep -q "^run-local: where to look" "$out/run-local.log" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" && rc=0 || rc=$?
        echo "$rc" >"$out/run-local.rc"
        step run-local-died
        exit 1
    fi
    waited=$((waited + 1))
    if [ "$waited" -gt 900 ]; then
        step run-local-timeout
        kill -TERM "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 1
done
step run-local-where-to-look
# The query run-local printed must return data now (curl came with run-local's setup).
curl -sf "http://127.0.0.1:$FRESH_VM_PORT/api/v1/query?query=node_load1" >"$out/query.json" || true
kill -TERM "$pid"
wait "$pid" && rc=0 || rc=$?
echo "$rc" >"$out/run-local.rc"
step run-local-stopped

# shellcheck disable=SC2086,SC2065 # the pytest arguments are word-split; scripts/test is not test(1)
if ./scripts/test $FRESH_PYTEST_ARGS >"$out/pytest.log" 2>&1; then rc=0; else rc=$?; fi
echo "$rc" >"$out/pytest.rc"
step scripts-test-done

# chromium is installed by scripts/test for the headless HTML tests: it must start and render.
chromium --headless --no-sandbox --disable-gpu --dump-dom \
    'data:text/html,<p id="fresh">rendered</p>' >"$out/chromium.html" 2>"$out/chromium.err" || true
step chromium-done
