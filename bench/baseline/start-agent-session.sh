#!/usr/bin/env bash
# start-agent-session.sh AGENT: the bash launcher that mosaic-launcher replaces, rewritten in its
# style as the yardstick for `cargo xtask bench`. Not shipped and not a reference for behaviour.
#
# On purpose, as in the original: three tmux calls (has-session, new-session, list-panes), and a
# heartbeat loop that forks `date`, `mv` and `sleep` on every beat and only notices the agent's
# death when its sleep ends. Two additions so that the bench can measure it: a `seq=` line that
# counts beats, and a `status=exited` record when the loop ends (the kindest reading of the
# original; it changes nothing per beat). The loop's argv carries `mosaic-heartbeat` and the
# heartbeat path, which is how the bench finds it.
set -euo pipefail

AGENT="${1:?usage: start-agent-session.sh AGENT}"
SOCKET="${MOSAIC_TMUX_SOCKET:-mosaic}"
WORKDIR="${MOSAIC_AGENT_WORKDIR:-$PWD}"
CMD="${MOSAIC_AGENT_COMMAND:-mosaic yolo ${MOSAIC_AGENT_RUNTIME:-pi}}"
HB_DIR="${MOSAIC_HEARTBEAT_RUN_DIR:-${XDG_RUNTIME_DIR:-/tmp/mosaic-$(id -u)}/mosaic/heartbeat}"
INTERVAL="${MOSAIC_HEARTBEAT_INTERVAL:-30}"

if tmux -L "$SOCKET" has-session -t "=$AGENT" 2>/dev/null; then
    echo "agent $AGENT already running"
    exit 0
fi

PREFIX=""
for dir in "${MOSAIC_RUNTIME_BIN:-}" "$HOME/.npm-global/bin" "$HOME/.local/bin"; do
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        PREFIX="$PREFIX$dir:"
    fi
done

tmux -L "$SOCKET" new-session -d -s "$AGENT" -c "$WORKDIR" "export PATH=$PREFIX\$PATH; exec $CMD"

PANE_PID=$(tmux -L "$SOCKET" list-panes -t "=$AGENT:0.0" -F '#{pane_pid}')
if [ -n "$PANE_PID" ]; then
    mkdir -p "$HB_DIR"
    HB_FILE="$HB_DIR/$AGENT.hb"
    setsid bash -c '
        PID=$1 F=$2 INTERVAL=$3 n=1
        while kill -0 "$PID" 2>/dev/null; do
            printf "ts=%s\npid=%s\nstatus=ok\nseq=%s\n" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PID" "$n" > "$F.tmp" && mv "$F.tmp" "$F"
            n=$((n+1))
            sleep "$INTERVAL"
        done
        printf "ts=%s\npid=%s\nstatus=exited\nseq=%s\n" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PID" "$n" > "$F.tmp" && mv "$F.tmp" "$F"
    ' mosaic-heartbeat "$PANE_PID" "$HB_FILE" "$INTERVAL" </dev/null >/dev/null 2>&1 &
    echo "started agent $AGENT on tmux socket $SOCKET: pane pid $PANE_PID, heartbeat $HB_FILE"
else
    echo "started agent $AGENT on tmux socket $SOCKET"
fi
