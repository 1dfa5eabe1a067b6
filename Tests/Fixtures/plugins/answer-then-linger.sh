#!/bin/sh
# Answers correctly and exits, but leaves a background child holding stdout open.
cat > /dev/null
echo $$ > "$PID_FILE"
sleep 300 &
echo $! > "$CHILD_PID_FILE"
printf '{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"lingering","expiresAt":4102444800}\n'
