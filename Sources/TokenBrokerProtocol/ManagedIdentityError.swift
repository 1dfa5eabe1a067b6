/// How the managed-identity protocols (App Service, IMDS) carry a broker error: the HTTP
/// status each wire code gets and the body each protocol's SDKs read. One table for the
/// daemon's compatibility endpoints and `tokenbroker relay`, so the two answer alike.
public enum ManagedIdentityError {
    /// Which protocol's body shape.
    public enum Shape: Sendable {
        /// `{"error","error_description"}`.
        case imds
        /// `{"statusCode","message","error"}`.
        case appService
    }

    /// The HTTP status for a wire error code.
    public static func status(for code: String) -> Int {
        switch WireErrorCode(rawValue: code) {
        case .badRequest, .identityRequired, .unknownIdentity: 400
        // Not 400: azure-identity reads a 400 from IMDS as "no identity here" and moves on silently.
        case .forbidden: 403
        case .upstreamRejected: 401
        case .throttled: 429
        case .assertionUnavailable, .assertionExpired, .upstreamUnavailable, .shuttingDown: 503
        default: 500
        }
    }

    /// The JSON body of an error in `shape`.
    public static func body(_ shape: Shape, status: Int, code: String, message: String) -> String {
        var writer = JSONWriter()
        writer.beginObject()
        switch shape {
        case .imds:
            writer.field("error", code)
            writer.field("error_description", message)
        case .appService:
            writer.field("statusCode", status)
            writer.field("message", message)
            writer.field("error", code)
        }
        writer.endObject()
        return writer.text
    }
}
