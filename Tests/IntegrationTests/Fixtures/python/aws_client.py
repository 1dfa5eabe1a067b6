"""Gets AWS credentials with boto3 the way an unmodified program does — from the
environment's container-credentials endpoint or a credential_process profile — then
calls sts:GetCallerIdentity with them against ENDPOINT (moto). Prints JSON.

usage: aws_client.py ENDPOINT
"""
import json
import sys

import boto3

session = boto3.Session(region_name="us-east-1")
credentials = session.get_credentials()
if credentials is None:
    print("no credentials found", file=sys.stderr)
    sys.exit(1)
frozen = credentials.get_frozen_credentials()
identity = session.client("sts", endpoint_url=sys.argv[1]).get_caller_identity()
print(json.dumps({"accessKeyId": frozen.access_key, "method": credentials.method, "arn": identity["Arn"]}))
