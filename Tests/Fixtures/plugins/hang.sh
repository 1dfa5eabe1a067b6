#!/bin/sh
# Never answers. The sleep is a child of this shell: both are in the plugin's process group.
echo $$ > "$PID_FILE"
sleep 300
