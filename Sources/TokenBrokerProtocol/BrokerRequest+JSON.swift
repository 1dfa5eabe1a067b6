extension BrokerRequest {
    /// The request as one line of JSON (without the newline), fields in declaration order as
    /// `JSONEncoder` wrote them: what clients without Foundation (the CLI, the relay) send.
    public func jsonBytes() -> [UInt8] {
        var writer = JSONWriter(capacity: 128)
        writer.beginObject()
        writer.field("op", op)
        switch id {
        case .number(let n): writer.field("id", n)
        case .string(let s): writer.field("id", s)
        case nil: break
        }
        writer.field("scope", scope)
        writer.field("resource", resource)
        writer.field("identity", identity)
        writer.field("minValiditySeconds", minValiditySeconds)
        writer.field("clientId", clientId)
        writer.field("tenantId", tenantId)
        writer.field("volume", volume)
        writer.endObject()
        return writer.bytes
    }
}
