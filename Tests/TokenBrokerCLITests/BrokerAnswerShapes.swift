import TokenBrokerProtocol

/// Answers as the broker writes them (`BrokerResponse.jsonBytes`), with the values they hold.
enum BrokerAnswerShapes {
    struct Shape: Sendable, CustomStringConvertible {
        var name: String
        var line: String
        var response: BrokerResponse
        var description: String { name }
    }

    static let all: [Shape] = [
        Shape(
            name: "a token",
            line:
                #"{"id":1,"ok":true,"token":"eyJ0.e30.c2ln","tokenType":"Bearer","expiresOn":1765000000,"expiresIn":3599,"identity":"default","scope":"https://storage.azure.com/.default"}"#,
            response: BrokerResponse(
                id: .number(1), ok: true, token: "eyJ0.e30.c2ln", tokenType: "Bearer", expiresOn: 1_765_000_000, expiresIn: 3599, identity: "default",
                scope: "https://storage.azure.com/.default")),
        Shape(
            name: "node mode's token, a string id, an unknown field and a null",
            line:
                #"{"id":"r-7","ok":true,"token":"t","serviceAccount":"ns/app","clientId":"0000-1","future":{"x":[1]},"scope":null}"#,
            response: BrokerResponse(id: .string("r-7"), ok: true, token: "t", serviceAccount: "ns/app", clientId: "0000-1")),
        Shape(
            name: "AWS credentials",
            line:
                #"{"id":1,"ok":true,"identity":"aws","credentials":{"accessKeyId":"AKIA","secretAccessKey":"s\/k","sessionToken":"st","expiration":"2026-12-06T18:00:00Z","accountId":"123456789012"}}"#,
            response: BrokerResponse(
                id: .number(1), ok: true, identity: "aws",
                credentials: AWSCredentialsObject(
                    accessKeyId: "AKIA", secretAccessKey: "s/k", sessionToken: "st", expiration: "2026-12-06T18:00:00Z", accountId: "123456789012"))),
        Shape(
            name: "an error with code, message, retryAfter and upstream details",
            line:
                #"{"id":1,"ok":false,"error":{"code":"upstream_rejected","message":"Entra said \"no\"\n","retryable":true,"retryAfter":30,"upstream":{"status":400,"codes":[700016,50013],"error":"invalid_client","traceId":"tr","correlationId":"co"}}}"#,
            response: .failure(
                id: .number(1),
                WireError(
                    code: "upstream_rejected", message: "Entra said \"no\"\n", retryable: true, retryAfter: 30,
                    upstream: UpstreamErrorDetails(status: 400, codes: [700016, 50013], error: "invalid_client", traceId: "tr", correlationId: "co")))
        ),
        Shape(
            name: "an error without an id",
            line: #"{"ok":false,"error":{"code":"bad_request","message":"the request line is not valid JSON","retryable":false}}"#,
            response: .failure(id: nil, WireError(code: .badRequest, message: "the request line is not valid JSON"))),
        Shape(
            name: "a status with identities, compat, pod and sinks",
            line: """
                {"id":1,"ok":true,"status":{"version":1,"ready":false,"identities":[{"name":"default","exchange":"entra","source":"file:/t","clientId":"c1",\
                "cachedScopes":["s1","s2"],"lastError":{"code":"assertion_unavailable","message":"m","retryable":true}},{"name":"b","exchange":"aws-sts",\
                "source":"exec:p","cachedScopes":[]}],"compat":{"identityEndpoint":"http://127.0.0.1:1/msi/token","imdsAuthorityHost":"http://127.0.0.1:1",\
                "identityHeader":"h"},"pod":{"uid":"u","tokens":["v/token"],"serviceAccounts":["ns/sa"],"exchange":"clientId"},"sinks":[{"path":"/p",\
                "identity":"default","scope":"s1","format":"token","lastWrite":1765000000,"expiresOn":1765003600,"lastError":{"code":"symlink","message":"x",\
                "retryable":false}}]}}
                """,
            response: BrokerResponse(
                id: .number(1), ok: true,
                status: BrokerStatus(
                    ready: false,
                    identities: [
                        IdentityStatus(
                            name: "default", exchange: "entra", source: "file:/t", clientId: "c1", cachedScopes: ["s1", "s2"],
                            lastError: WireError(code: "assertion_unavailable", message: "m", retryable: true)),
                        IdentityStatus(name: "b", exchange: "aws-sts", source: "exec:p", cachedScopes: []),
                    ],
                    compat: CompatStatus(
                        identityEndpoint: "http://127.0.0.1:1/msi/token", imdsAuthorityHost: "http://127.0.0.1:1", identityHeader: "h"),
                    pod: PodStatus(uid: "u", tokens: ["v/token"], serviceAccounts: ["ns/sa"], exchange: "clientId"),
                    sinks: [
                        SinkStatus(
                            path: "/p", identity: "default", scope: "s1", format: "token", lastWrite: 1_765_000_000, expiresOn: 1_765_003_600,
                            lastError: WireError(code: "symlink", message: "x", retryable: false))
                    ]))),
    ]
}
