#!/bin/sh
# An exchange whose token lists this process's blocked and ignored signal masks, its pid and
# its process group.
cat > /dev/null
read -r pid comm state ppid pgrp rest < /proc/$$/stat
printf '{"apiVersion":"tokenbroker/v1","kind":"ExchangeResponse","token":"%s Pid: %s Pgrp: %s","expiresAt":4102444800}\n' \
  "$(grep -E '^Sig(Blk|Ign):' /proc/$$/status | tr -s '\t\n' '  ')" "$pid" "$pgrp"
