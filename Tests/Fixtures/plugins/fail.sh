#!/bin/sh
# Exits 3 after explaining on stderr, carelessly including a bearer token and a terminal escape.
cat > /dev/null
echo $$ > "$PID_FILE"
printf 'lots of earlier noise\n%.0s' 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 >&2
printf 'request failed: Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJl\n' >&2
printf '\033[31mmetadata server answered HTTP 403\033[0m\n' >&2
exit 3
