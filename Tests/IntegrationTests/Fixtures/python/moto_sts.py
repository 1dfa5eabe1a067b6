"""moto's STS (and IAM) on 127.0.0.1 at a free port, for the AWS STS tests.

usage: moto_sts.py PORT_FILE
The port is written to PORT_FILE once listening; runs until killed.
"""
import os
import sys
import time

from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(port))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(3600)
