#!/bin/sh
# Starts a background child that holds stdout open, then hangs itself too.
echo $$ > "$PID_FILE"
sleep 300 &
echo $! > "$CHILD_PID_FILE"
wait
