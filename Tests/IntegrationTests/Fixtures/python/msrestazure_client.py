"""Gets a token the way msrestazure (and so `az login --identity` up to 2.72) does:
MSIAuthentication, through App Service 2017-09-01 when MSI_ENDPOINT, MSI_SECRET and
APPSETTING_WEBSITE_SITE_NAME are set, else through IMDS at the hard-coded 169.254.169.254.
Prints {"token": …, "expires_on": …}; errors go to stderr with exit status 1.

usage: msrestazure_client.py RESOURCE [CLIENT_ID]
"""
import json
import sys

resource = sys.argv[1]
client_id = sys.argv[2] if len(sys.argv) > 2 else None

try:
    from msrestazure.azure_active_directory import MSIAuthentication

    options = {"client_id": client_id} if client_id else {}
    credentials = MSIAuthentication(resource=resource, timeout=30, **options)
    print(json.dumps({"token": credentials.token["access_token"], "expires_on": credentials.token.get("expires_on")}))
except Exception as error:  # the test reads the client's own message
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(1)
