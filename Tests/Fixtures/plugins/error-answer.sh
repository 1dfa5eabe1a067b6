#!/bin/sh
# Answers kind Error with $PLUGIN_MESSAGE and $PLUGIN_RETRYABLE (a JSON boolean).
cat > /dev/null
printf '{"apiVersion":"tokenbroker/v1","kind":"Error","message":"%s","retryable":%s}\n' "$PLUGIN_MESSAGE" "${PLUGIN_RETRYABLE:-false}"
