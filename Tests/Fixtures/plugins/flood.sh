#!/bin/sh
# Prints 10 MiB on stdout.
echo $$ > "$PID_FILE"
head -c 10485760 /dev/zero | tr '\0' 'x'
