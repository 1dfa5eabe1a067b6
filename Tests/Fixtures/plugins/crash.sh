#!/bin/sh
# Dies of a signal.
cat > /dev/null
echo 'about to crash' >&2
kill -TERM $$
