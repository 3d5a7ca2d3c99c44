#!/bin/sh
# A mosaic-fleet event hook: a message in the status line of your own tmux (not the agents'
# server) when an agent needs a person. MOSAIC_NOTIFY_TMUX_SOCKET names that server's socket
# (`tmux -L NAME`); without it, tmux's default server. It shows on the client you used last.
#
#   mosaic-launcher builder-1 --on-event /path/to/contrib/hooks/tmux-message.sh
#
# tmux expands `#` formats in a message: agent names cannot hold one, events are words.
case "$MOSAIC_EVENT" in
waiting | exited | failed) ;;
*) exit 0 ;;
esac
set -- display-message -d 5000 "mosaic: $MOSAIC_AGENT $MOSAIC_EVENT"
# The agents' server is not the one to tell: never the one the sidecar may have inherited.
unset TMUX
if [ -n "${MOSAIC_NOTIFY_TMUX_SOCKET:-}" ]; then
    exec tmux -L "$MOSAIC_NOTIFY_TMUX_SOCKET" "$@"
fi
exec tmux "$@"
