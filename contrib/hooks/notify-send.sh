#!/bin/sh
# A mosaic-fleet event hook: a desktop notification when an agent needs a person (it waits,
# it exited, its restarts gave up). Every other event is let pass.
#
#   mosaic-launcher builder-1 --on-event /path/to/contrib/hooks/notify-send.sh
#
# The sidecar runs it with the launcher's environment, so a launch from the desktop session
# reaches its notification daemon (DBUS_SESSION_BUS_ADDRESS). What happened is in MOSAIC_*
# variables only; nothing here is spliced into a command line.
case "$MOSAIC_EVENT" in
waiting) urgency=normal what="is waiting for you" ;;
exited) urgency=normal what="exited${MOSAIC_EXIT_STATUS:+ with status $MOSAIC_EXIT_STATUS}${MOSAIC_EXIT_SIGNAL:+ by signal $MOSAIC_EXIT_SIGNAL}" ;;
failed) urgency=critical what="failed: its restarts gave up after $MOSAIC_RESTARTS" ;;
*) exit 0 ;;
esac
exec notify-send --app-name=mosaic-fleet --urgency="$urgency" -- \
    "mosaic: $MOSAIC_AGENT" "$MOSAIC_AGENT $what ($MOSAIC_TIME)"
