#!/bin/sh
# An exchange whose token lists the file descriptors this process has open.
cat > /dev/null
printf '{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"%s","expiresAt":4102444800}\n' "$(ls /proc/$$/fd | tr '\n' ' ')"
