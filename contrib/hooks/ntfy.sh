#!/bin/sh
# A mosaic-fleet event hook: a push to your phone through ntfy (https://ntfy.sh or your own
# server) when an agent needs a person. MOSAIC_NTFY_URL is the topic's URL; keep it secret,
# as anyone who knows it can read the topic.
#
#   MOSAIC_NTFY_URL=https://ntfy.sh/my-secret-topic \
#       mosaic-launcher builder-1 --on-event /path/to/contrib/hooks/ntfy.sh
#
# The body goes on curl's stdin, never on its command line.
case "$MOSAIC_EVENT" in
waiting) priority=default ;;
exited | failed) priority=high ;;
*) exit 0 ;;
esac
: "${MOSAIC_NTFY_URL:?set MOSAIC_NTFY_URL to the ntfy topic URL}"
printf '%s %s%s%s at %s\n' "$MOSAIC_AGENT" "$MOSAIC_EVENT" \
    "${MOSAIC_EXIT_STATUS:+ (status $MOSAIC_EXIT_STATUS)}" \
    "${MOSAIC_EXIT_SIGNAL:+ (signal $MOSAIC_EXIT_SIGNAL)}" "$MOSAIC_TIME" |
    exec curl --silent --show-error --fail --max-time 10 \
        --header "Title: mosaic: $MOSAIC_AGENT $MOSAIC_EVENT" \
        --header "Priority: $priority" \
        --header "Tags: robot" \
        --data-binary @- -- "$MOSAIC_NTFY_URL"
