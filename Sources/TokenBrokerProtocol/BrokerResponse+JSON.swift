extension BrokerResponse {
    /// The response as one line of JSON (without the newline), fields in the order
    /// docs/protocol.md shows them.
    public func jsonBytes() -> [UInt8] {
        var writer = JSONWriter(capacity: token.map { $0.utf8.count + 200 } ?? 256)
        writer.beginObject()
        switch id {
        case .number(let n): writer.field("id", n)
        case .string(let s): writer.field("id", s)
        case nil: break
        }
        writer.field("ok", ok)
        writer.field("token", token)
        writer.field("tokenType", tokenType)
        writer.field("expiresOn", expiresOn)
        writer.field("expiresIn", expiresIn)
        writer.field("identity", identity)
        writer.field("scope", scope)
        writer.field("serviceAccount", serviceAccount)
        writer.field("clientId", clientId)
        if let credentials {
            writer.key("credentials")
            writer.beginObject()
            writer.field("accessKeyId", credentials.accessKeyId)
            writer.field("secretAccessKey", credentials.secretAccessKey)
            writer.field("sessionToken", credentials.sessionToken)
            writer.field("expiration", credentials.expiration)
            writer.field("accountId", credentials.accountId)
            writer.endObject()
        }
        if let status {
            writer.key("status")
            status.write(to: &writer)
        }
        if let error {
            writer.key("error")
            error.write(to: &writer)
        }
        writer.endObject()
        return writer.bytes
    }
}

extension WireError {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("code", code)
        writer.field("message", message)
        writer.field("retryable", retryable)
        writer.field("retryAfter", retryAfter)
        if let upstream {
            writer.key("upstream")
            writer.beginObject()
            writer.field("status", upstream.status)
            writer.beginArray("codes")
            for code in upstream.codes { writer.element(code) }
            writer.endArray()
            writer.field("error", upstream.error)
            writer.field("traceId", upstream.traceId)
            writer.field("correlationId", upstream.correlationId)
            writer.endObject()
        }
        writer.endObject()
    }
}

extension BrokerStatus {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("version", version)
        writer.field("ready", ready)
        writer.beginArray("identities")
        for identity in identities { identity.write(to: &writer) }
        writer.endArray()
        if let compat {
            writer.key("compat")
            writer.beginObject()
            writer.field("identityEndpoint", compat.identityEndpoint)
            writer.field("imdsAuthorityHost", compat.imdsAuthorityHost)
            writer.field("socket", compat.socket)
            writer.field("identityHeader", compat.identityHeader)
            writer.endObject()
        }
        if let pod {
            writer.key("pod")
            pod.write(to: &writer)
        }
        if let sinks {
            writer.beginArray("sinks")
            for sink in sinks { sink.write(to: &writer) }
            writer.endArray()
        }
        writer.endObject()
    }
}

extension IdentityStatus {
    /// As an element of `identities`.
    func write(to writer: inout JSONWriter) {
        writer.separator()
        writer.beginObject()
        writer.field("name", name)
        writer.field("exchange", exchange)
        writer.field("source", source)
        writer.field("clientId", clientId)
        writer.beginArray("cachedScopes")
        for scope in cachedScopes { writer.element(scope) }
        writer.endArray()
        if let lastError {
            writer.key("lastError")
            lastError.write(to: &writer)
        }
        writer.endObject()
    }
}

extension PodStatus {
    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("uid", uid)
        writer.beginArray("tokens")
        for token in tokens { writer.element(token) }
        writer.endArray()
        writer.beginArray("serviceAccounts")
        for account in serviceAccounts { writer.element(account) }
        writer.endArray()
        writer.field("exchange", exchange)
        writer.endObject()
    }
}

extension SinkStatus {
    /// As an element of `sinks`.
    func write(to writer: inout JSONWriter) {
        writer.separator()
        writer.beginObject()
        writer.field("path", path)
        writer.field("identity", identity)
        writer.field("scope", scope)
        writer.field("format", format)
        writer.field("lastWrite", lastWrite)
        writer.field("expiresOn", expiresOn)
        if let lastError {
            writer.key("lastError")
            lastError.write(to: &writer)
        }
        writer.endObject()
    }
}
