#!/bin/sh
# A well-behaved exchange: answers $PLUGIN_TOKEN (default "access-token-from-plugin") valid
# until $PLUGIN_EXPIRES_AT (a JSON value). $REQUEST_FILE receives the request, $PID_FILE the pid.
[ -n "$PID_FILE" ] && echo $$ > "$PID_FILE"
if [ -n "$REQUEST_FILE" ]; then cat > "$REQUEST_FILE"; else cat > /dev/null; fi
printf '{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"%s","tokenType":"%s","expiresAt":%s}\n' \
  "${PLUGIN_TOKEN:-access-token-from-plugin}" "${PLUGIN_TOKEN_TYPE:-Bearer}" "${PLUGIN_EXPIRES_AT:-4102444800}"
