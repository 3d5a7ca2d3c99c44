#!/bin/sh
# A mosaic-fleet event hook: every event as a JSON POST to a webhook (MOSAIC_WEBHOOK_URL), with
# a `text` line for chat webhooks (Slack, Mattermost, Discord's /slack endpoint) and the
# fields for a program.
#
#   MOSAIC_WEBHOOK_URL=https://hooks.example.com/T000/B000/XXXX \
#       mosaic-launcher builder-1 --on-event /path/to/contrib/hooks/webhook.sh
#
# Only safe text reaches the JSON: agent names are A-Z a-z 0-9 _ -, events are words, the
# rest numbers and a timestamp. The body goes on curl's stdin.
: "${MOSAIC_WEBHOOK_URL:?set MOSAIC_WEBHOOK_URL to the webhook URL}"
number() { case "$1" in '' | *[!0-9-]*) echo null ;; *) echo "$1" ;; esac; }
printf '{"text":"mosaic: %s %s","agent":"%s","event":"%s","previous":"%s","exit_status":%s,"exit_signal":%s,"restarts":%s,"time":"%s"}\n' \
    "$MOSAIC_AGENT" "$MOSAIC_EVENT" "$MOSAIC_AGENT" "$MOSAIC_EVENT" "$MOSAIC_PREVIOUS" \
    "$(number "$MOSAIC_EXIT_STATUS")" "$(number "$MOSAIC_EXIT_SIGNAL")" \
    "$(number "$MOSAIC_RESTARTS")" "$MOSAIC_TIME" |
    exec curl --silent --show-error --fail --max-time 10 \
        --header "Content-Type: application/json" \
        --data-binary @- -- "$MOSAIC_WEBHOOK_URL"
