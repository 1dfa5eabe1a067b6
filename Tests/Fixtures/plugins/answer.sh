#!/bin/sh
# Prints $PLUGIN_ANSWER verbatim (for malformed or unusual answers), then exits $PLUGIN_EXIT.
cat > /dev/null
printf '%s\n' "$PLUGIN_ANSWER"
exit "${PLUGIN_EXIT:-0}"
