"""Gets a token the way an unmodified program on Azure would, through whatever
managed-identity endpoint its environment points at (IDENTITY_ENDPOINT and
IDENTITY_HEADER: App Service; AZURE_POD_IDENTITY_AUTHORITY_HOST: IMDS), and
prints it as JSON. Errors go to stderr with exit status 1.

usage: managed_identity.py CLIENT SCOPE [CLIENT_ID]
CLIENT is one of:
  managed   azure.identity.ManagedIdentityCredential
  default   azure.identity.DefaultAzureCredential
  msal      msal.ManagedIdentityClient
  probe     azure-identity's IMDS credential with its availability probe forced on,
            as DefaultAzureCredential runs it when it does not know IMDS is there
"""
import json
import sys

client, scope = sys.argv[1:3]
client_id = sys.argv[3] if len(sys.argv) > 3 else None

try:
    if client == "msal":
        import msal
        import requests

        identity = (
            msal.UserAssignedManagedIdentity(client_id=client_id)
            if client_id
            else msal.SystemAssignedManagedIdentity()
        )
        app = msal.ManagedIdentityClient(identity, http_client=requests.Session())
        resource = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        result = app.acquire_token_for_client(resource=resource)
        if "access_token" not in result:
            raise RuntimeError(f"msal: {result.get('error')}: {result.get('error_description')}")
        print(json.dumps({"token": result["access_token"], "expires_in": result.get("expires_in")}))
    elif client == "probe":
        from azure.identity._credentials.imds import ImdsCredential

        credential = ImdsCredential(_enable_imds_probe=True)
        credential._endpoint_available = None  # probe although the authority host is set
        token = credential.get_token(scope)
        print(json.dumps({"token": token.token, "expires_on": token.expires_on}))
    else:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        if client == "managed":
            credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
        else:
            # Without an explicit id DefaultAzureCredential reads AZURE_CLIENT_ID itself.
            options = {"managed_identity_client_id": client_id} if client_id else {}
            credential = DefaultAzureCredential(**options)
        token = credential.get_token(scope)
        print(json.dumps({"token": token.token, "expires_on": token.expires_on}))
except Exception as error:  # the test reads the SDK's own message
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(1)
