#!/bin/sh
# Prints something that is not JSON.
cat > /dev/null
echo '<html><body>502 Bad Gateway</body></html>'
