#!/bin/sh
# A well-behaved assertion source: prints the JWT the test put into $PLUGIN_TOKEN.
# Optional: $REQUEST_FILE receives the request read from stdin, $PID_FILE this process's pid,
# $PLUGIN_EXPIRES_AT becomes the answer's expiresAt (a JSON value: "2026-…Z" or 1795914123).
[ -n "$PID_FILE" ] && echo $$ > "$PID_FILE"
if [ -n "$REQUEST_FILE" ]; then cat > "$REQUEST_FILE"; else cat > /dev/null; fi
if [ -n "$PLUGIN_EXPIRES_AT" ]; then
  printf '{"apiVersion":"tokenbroker/v1","kind":"AssertionResponse","token":"%s","expiresAt":%s,"futureField":{"ignored":true}}\n' "$PLUGIN_TOKEN" "$PLUGIN_EXPIRES_AT"
else
  printf '{"apiVersion":"tokenbroker/v1","kind":"AssertionResponse","token":"%s"}\n' "$PLUGIN_TOKEN"
fi
