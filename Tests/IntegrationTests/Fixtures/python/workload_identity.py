"""Gets a token with azure-identity's WorkloadIdentityCredential, exactly as an
unmodified Azure SDK in a pod would, and prints it as JSON.

usage: workload_identity.py TENANT CLIENT TOKEN_FILE AUTHORITY SCOPE
The CA of the dev token service comes in through REQUESTS_CA_BUNDLE.
"""
import json
import sys

from azure.identity import WorkloadIdentityCredential

tenant, client, token_file, authority, scope = sys.argv[1:6]
credential = WorkloadIdentityCredential(
    tenant_id=tenant, client_id=client, token_file_path=token_file, authority=authority
)
token = credential.get_token(scope)
print(json.dumps({"token": token.token, "expires_on": token.expires_on}))
