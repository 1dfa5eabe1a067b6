import AsyncHTTPClient
import FoundationEssentials
import Glibc
import JWTKit
import Logging
import NIOCore
import NIOHTTP1

/// Fetches an issuer's discovery document and JWKS over HTTPS and verifies assertions with them.
///
/// Like Entra it caches the key set per issuer and refetches when a token names a `kid` the
/// cached set lacks (the issuer rotated its key). Concurrent misses for one issuer share one fetch.
actor OIDCKeyCache {
    private struct Entry {
        var keys: JWTKeyCollection
        var kids: Set<String>
        var fetchedAt: Date
    }

    /// Keys older than this are refetched even when the `kid` is known.
    private static let maxAge: TimeInterval = 3600
    private static let maxDocumentBytes = 1 << 20

    private let client: HTTPClient
    private let logger: Logger
    private var entries: [String: Entry] = [:]
    private var inFlight: [String: Task<Entry, any Error>] = [:]

    init(client: HTTPClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Verifies `token`'s signature against `issuer`'s published keys.
    ///
    /// - Throws: AADSTS90061 when the issuer's endpoints cannot be fetched, AADSTS700027 when
    ///   the `kid` is unknown or the signature does not verify.
    func verify(_ token: String, kid: String?, issuer: String) async throws(EntraError) {
        guard let kid else { throw .signatureValidationFailed("The key was not found. The assertion header has no 'kid'.") }
        var entry: Entry
        var fresh = false
        if let cached = entries[issuer], Date().timeIntervalSince(cached.fetchedAt) < Self.maxAge {
            entry = cached
        } else {
            entry = try await fetch(issuer)
            fresh = true
        }
        if !entry.kids.contains(kid), !fresh {
            entry = try await fetch(issuer)
        }
        guard entry.kids.contains(kid) else {
            throw .signatureValidationFailed("The key was not found., Key id presented: '\(kid)'")
        }
        do {
            _ = try await entry.keys.verify(token, as: AssertionClaims.self)
        } catch {
            throw .signatureValidationFailed("The provided signature value did not match the expected signature value.")
        }
    }

    private func fetch(_ issuer: String) async throws(EntraError) -> Entry {
        let task: Task<Entry, any Error>
        if let running = inFlight[issuer] {
            task = running
        } else {
            task = Task { try await Self.download(issuer, client: client, logger: logger) }
            inFlight[issuer] = task
        }
        do {
            let entry = try await task.value
            inFlight[issuer] = nil
            entries[issuer] = entry
            return entry
        } catch let error as EntraError {
            inFlight[issuer] = nil
            throw error
        } catch {
            inFlight[issuer] = nil
            throw .oidcEndpointFailed("Unexpected error: \(error)")
        }
    }

    private static func download(_ issuer: String, client: HTTPClient, logger: Logger) async throws -> Entry {
        guard issuer.hasPrefix("https://") else {
            throw EntraError.oidcEndpointFailed("The issuer '\(issuer)' is not an https URL.")
        }
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let discoveryURL = base + "/.well-known/openid-configuration"
        let discovery = try await getJSON(discoveryURL, client: client)
        guard let document = try? JSONDecoder().decode(DiscoveryDocument.self, from: Data(discovery)),
            let jwksURI = document.jwks_uri, jwksURI.hasPrefix("https://")
        else {
            throw EntraError.oidcEndpointFailed("The discovery document at '\(discoveryURL)' has no https 'jwks_uri'.")
        }
        guard document.issuer == issuer else {
            throw EntraError.oidcEndpointFailed(
                "The discovery document names issuer '\(document.issuer ?? "")', not '\(issuer)'.")
        }
        let jwksBytes = try await getJSON(jwksURI, client: client)
        let jwks: JWKS
        do {
            jwks = try JSONDecoder().decode(JWKS.self, from: Data(jwksBytes))
        } catch {
            throw EntraError.oidcEndpointFailed("The key set at '\(jwksURI)' is not a valid JWKS.")
        }
        let keys = JWTKeyCollection()
        var kids = Set<String>()
        for jwk in jwks.keys where jwk.keyType == .rsa {
            guard let kid = jwk.keyIdentifier, (try? await keys.add(jwk: jwk)) != nil else { continue }
            kids.insert(kid.string)
        }
        // Without this, an unknown kid would silently verify against the first key.
        await keys.clearDefault()
        logger.debug("fetched issuer keys", metadata: ["oidc.issuer": "\(issuer)", "oidc.kids": "\(kids.sorted())"])
        return Entry(keys: keys, kids: kids, fetchedAt: Date())
    }

    private static func getJSON(_ url: String, client: HTTPClient) async throws -> [UInt8] {
        do {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Accept", value: "application/json")
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: maxDocumentBytes)
            guard response.status == .ok else {
                throw EntraError.oidcEndpointFailed("'\(url)' answered HTTP \(response.status.code).")
            }
            return Array(buffer: body)
        } catch let error as EntraError {
            throw error
        } catch {
            throw EntraError.oidcEndpointFailed("Could not reach '\(url)': \(error).")
        }
    }
}

/// The two fields of an OpenID discovery document the emulator reads; one of another type counts as absent.
private struct DiscoveryDocument: Decodable {
    var jwks_uri: String?
    var issuer: String?

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        jwks_uri = try? container.decodeIfPresent(String.self, forKey: .jwks_uri)
        issuer = try? container.decodeIfPresent(String.self, forKey: .issuer)
    }

    private enum CodingKeys: String, CodingKey { case jwks_uri, issuer }
}
