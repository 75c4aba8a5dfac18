#!/usr/bin/env bash
# Screenshot the Temporal Web UI after a real `mosaic demo` enrollment: B's redeem run, the
# runs of the grant, and A's certificate lifecycle run (`peer-cert-<A's peer id>`).
#
#   infra/screenshot/take.sh            # writes docs/images/temporal-ui-*.png
#
# Needs Debian's chromium (apt-get install -y chromium); optipng is used if present.
# Env: OUT_DIR (default docs/images), WAIT_MS (Chromium virtual-time budget, default 15000),
#      WINDOW (default 1600,1000), LIFECYCLE_WINDOW (default 1800,1300).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT_DIR=${OUT_DIR:-$REPO/docs/images}
WAIT_MS=${WAIT_MS:-15000}
WINDOW=${WINDOW:-1600,1000}
LIFECYCLE_WINDOW=${LIFECYCLE_WINDOW:-1800,1300}
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
[[ -x $CHROMIUM ]] || { echo "chromium not found: apt-get install -y chromium" >&2; exit 1; }

WORK=$(mktemp -d -t mosaic-shot.XXXXXX)
DEMO_PID=
cleanup() {
    if [[ -n $DEMO_PID ]] && kill -0 "$DEMO_PID" 2>/dev/null; then
        # Ctrl-C for the demo's process group: its `finally` stops both gateways (which run
        # in sessions of their own) and the Temporal dev server. SIGKILL only as a last resort.
        kill -INT -- "-$DEMO_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DEMO_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$DEMO_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

UI_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOG=$WORK/demo.log
echo "starting mosaic demo (UI port $UI_PORT, dir $WORK/demo)…"
# PYTHONUNBUFFERED: the demo's stdout is a file here, so without it the links sit in the buffer.
# setsid: own process group. env --default-signal=INT: bash starts background jobs of a script
# with SIGINT ignored, and then Python never raises KeyboardInterrupt, so the demo would not
# clean up on our Ctrl-C.
PYTHONUNBUFFERED=1 setsid env --default-signal=INT "$REPO/.venv/bin/mosaic" demo --keep-running \
    --dir "$WORK/demo" --ui-port "$UI_PORT" >"$LOG" 2>&1 &
DEMO_PID=$!

for _ in $(seq 240); do
    grep -q "Everything stays up" "$LOG" && break
    if ! kill -0 "$DEMO_PID" 2>/dev/null; then
        echo "mosaic demo exited early:" >&2; cat "$LOG" >&2; exit 1
    fi
    sleep 0.5
done
grep -q "Everything stays up" "$LOG" || { echo "demo did not finish in 120s:" >&2; cat "$LOG" >&2; exit 1; }

RUN_URL=$(grep -oE "http://[^ ]+/workflows/enroll-[0-9A-Za-z_-]+" "$LOG" | head -n1)
GRANT_ID=$(sed -nE 's/^ *grant ([0-9a-f-]{36}) is .*/\1/p' "$LOG" | head -n1)
[[ -n $RUN_URL ]] || { echo "no enroll-… run URL in the demo output:" >&2; cat "$LOG" >&2; exit 1; }
# The demo names A's peer only in its peer-add run link; the lifecycle run is peer-cert-<same id>.
PEER_ID=$(grep -oE "/workflows/peer-add-[0-9A-Za-z_-]+" "$LOG" | head -n1 | sed 's|.*/peer-add-||')
[[ -n $PEER_ID ]] || { echo "no peer-add-… run URL in the demo output:" >&2; cat "$LOG" >&2; exit 1; }
BASE=${RUN_URL%%/namespaces/*}
# Its Event History tab has a URL only per run: ask the UI's own API for the current run id.
RUN_ID_OF='import json, sys; print(json.load(sys.stdin)["workflowExecutionInfo"]["execution"]["runId"])'
LIFECYCLE_RUN=
for _ in $(seq 20); do
    LIFECYCLE_RUN=$(curl -fsS "$BASE/api/v1/namespaces/default/workflows/peer-cert-$PEER_ID" \
        2>/dev/null | python3 -c "$RUN_ID_OF" 2>/dev/null) && break
    sleep 0.5
done
[[ -n $LIFECYCLE_RUN ]] || { echo "no run of peer-cert-$PEER_ID in the UI's API" >&2; exit 1; }
LIFECYCLE_URL="$BASE/namespaces/default/workflows/peer-cert-$PEER_ID/$LIFECYCLE_RUN/history"
if [[ -n $GRANT_ID ]]; then
    LIST_URL="$BASE/namespaces/default/workflows?query=GrantId%3D%22$GRANT_ID%22"
else
    LIST_URL="$BASE/namespaces/default/workflows"
fi
echo "redeem run: $RUN_URL"
echo "list:       $LIST_URL"
echo "lifecycle:  $LIFECYCLE_URL"

shoot() { # shoot <url> <out.png>
    local profile
    profile=$(mktemp -d -p "$WORK" profile.XXXX)
    # --disable-background-networking & co: no calls home (they are refused here and stall it).
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$profile" \
        --window-size="$WINDOW" --virtual-time-budget="$WAIT_MS" \
        --screenshot="$2" "$1" >"$WORK/chromium.log" 2>&1 \
        || { cat "$WORK/chromium.log" >&2; return 1; }
    [[ -s $2 ]] || { echo "no screenshot written for $1" >&2; cat "$WORK/chromium.log" >&2; return 1; }
    if command -v optipng >/dev/null; then optipng -quiet -o2 "$2"; fi
    echo "wrote $2 ($(du -k "$2" | cut -f1) KB)"
}

# A running run: the UI long-polls its history, so the virtual-time budget above never runs
# out. live_shot.py loads it in real time over the DevTools pipe, waits for the timer event,
# opens the WorkflowExecutionStarted event (its search attributes) and shoots.
OPEN_STARTED_EVENT='[...document.querySelectorAll("tr")]
    .find((row) => row.innerText.includes("Workflow Execution Started"))
    ?.querySelector("button")?.click()'
shoot_running() { # shoot_running <url> <out.png>
    python3 "$REPO/infra/screenshot/live_shot.py" "$CHROMIUM" "$1" "$2" "$LIFECYCLE_WINDOW" \
        "Timer Started" $((WAIT_MS / 1000 * 2)) "$OPEN_STARTED_EVENT" \
        || { echo "the run's timer did not show in $1" >&2; return 1; }
    if command -v optipng >/dev/null; then optipng -quiet -o2 "$2"; fi
    echo "wrote $2 ($(du -k "$2" | cut -f1) KB)"
}

mkdir -p "$OUT_DIR"
shoot "$RUN_URL" "$OUT_DIR/temporal-ui-redeem-run.png"
shoot "$LIST_URL" "$OUT_DIR/temporal-ui-workflows.png"
# `mosaic demo` keeps MOSAIC_* out of its gateways' environment, so the certificate has the
# default lifetime: the run is shot waiting on its timer, before any renewal.
shoot_running "$LIFECYCLE_URL" "$OUT_DIR/temporal-ui-lifecycle-run.png"
