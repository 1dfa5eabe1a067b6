public import FoundationEssentials
import Glibc

/// A signed JWT that proves who the workload is (for example a projected
/// Kubernetes service-account token), ready to be traded for an access token.
///
/// Its `description` shows claims only: interpolating an assertion into a log
/// line never leaks the token.
public struct Assertion: Sendable, CustomStringConvertible {
    /// The compact JWT. Send it upstream; never log it.
    public let jwt: String
    /// The decoded claims.
    public let claims: JWTClaims
    /// Where it came from, for error messages: a file path or a plugin name.
    public let origin: String
    /// When the broker read it (wall clock).
    public let loadedAt: Date

    /// Decodes `jwt` and records where it came from.
    public init(jwt: String, origin: String, loadedAt: Date) throws(JWTDecodingError) {
        self.claims = try JWTClaims(jwt: jwt)
        self.jwt = jwt
        self.origin = origin
        self.loadedAt = loadedAt
    }

    /// Checks `exp` and `nbf` against `now`, allowing `skew` for clock drift on `nbf`.
    ///
    /// An assertion that expires within `minimumRemaining` counts as expired: by the time
    /// the token service reads it, it would be.
    public func checkValidity(
        at now: Date,
        skew: TimeInterval = 60,
        minimumRemaining: TimeInterval = 5
    ) throws(TokenExchangeError) {
        if let exp = claims.expiresAt, exp.timeIntervalSince(now) < minimumRemaining {
            throw .assertionExpired(origin: origin, expiresAt: exp, now: now)
        }
        if let nbf = claims.notBefore, nbf.timeIntervalSince(now) > skew {
            throw .assertionNotYetValid(origin: origin, notBefore: nbf, now: now)
        }
    }

    public var description: String {
        "Assertion(origin: \(origin), iss: \(JWTClaims.shown(claims.issuer ?? "-")), sub: \(JWTClaims.shown(claims.subject ?? "-")), "
            + "aud: \(claims.audiences), exp: \(claims.expiresAt.map { String(Int($0.timeIntervalSince1970)) } ?? "-"))"
    }
}
