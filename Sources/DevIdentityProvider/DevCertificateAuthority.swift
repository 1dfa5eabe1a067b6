import Crypto
import FoundationEssentials
import Glibc
import NIOSSL
import SwiftASN1
import X509

/// A throw-away P-256 certificate authority and the one server certificate it signs.
///
/// Both HTTPS servers present the leaf; clients trust `caPEM`. The leaf names 127.0.0.1, ::1
/// and localhost so hostname validation stays on: a client that skips verification to reach
/// the emulator would hide the trust-root bugs this provider exists to catch.
struct DevCertificateAuthority: Sendable {
    /// The CA certificate, PEM.
    let caPEM: String
    /// The server certificate, PEM.
    let leafPEM: String
    /// The server key, PEM (PKCS#8).
    let leafKeyPEM: String

    /// Generates a fresh CA and leaf, valid from an hour ago (clock skew) for `validity`.
    init(validity: Duration = .seconds(365 * 24 * 3600), now: Date = Date()) throws {
        let notBefore = now.addingTimeInterval(-3600)
        let notAfter = now.addingTimeInterval(TimeInterval(validity.components.seconds))

        let caKey = P256.Signing.PrivateKey()
        let caName = try Self.name("TokenBroker dev CA \(UUID().uuidString.prefix(8))")
        let ca = try Self.certificate(
            subject: caName, publicKey: caKey.publicKey, issuer: caName, issuerKey: caKey, validity: (notBefore, notAfter),
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(caKey.publicKey))
            })

        let leafKey = P256.Signing.PrivateKey()
        let leafName = try Self.name("localhost")
        let leaf = try Self.certificate(
            subject: leafName, publicKey: leafKey.publicKey, issuer: caName, issuerKey: caKey, validity: (notBefore, notAfter),
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([
                    .dnsName("localhost"),
                    .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                    .ipAddress(ASN1OctetString(contentBytes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
                ])
            })

        self.caPEM = try ca.serializeAsPEM().pemString
        self.leafPEM = try leaf.serializeAsPEM().pemString
        self.leafKeyPEM = leafKey.pemRepresentation
    }

    private static func name(_ commonName: String) throws -> DistinguishedName {
        try DistinguishedName {
            OrganizationName("TokenBroker dev")
            CommonName(commonName)
        }
    }

    /// A v3 certificate with a random serial, signed by `issuerKey`.
    private static func certificate(
        subject: DistinguishedName, publicKey: P256.Signing.PublicKey, issuer: DistinguishedName, issuerKey: P256.Signing.PrivateKey,
        validity: (notBefore: Date, notAfter: Date), extensions: Certificate.Extensions
    ) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(publicKey),
            notValidBefore: validity.notBefore, notValidAfter: validity.notAfter, issuer: issuer, subject: subject,
            extensions: extensions, issuerPrivateKey: .init(issuerKey))
    }

    /// A TLS server configuration presenting the leaf.
    func serverTLSConfiguration() throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(leafPEM.utf8))
        let key = try NIOSSLPrivateKey(bytes: Array(leafKeyPEM.utf8), format: .pem)
        return TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
    }

    /// A TLS client configuration that trusts this CA alone: the emulator fetches keys only
    /// from the dev issuer, and the system bundle would cost its first request 4–5 ms to parse.
    func clientTLSConfiguration() throws -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        return configuration
    }
}
