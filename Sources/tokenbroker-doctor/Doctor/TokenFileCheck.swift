import Foundation

/// The assertion file: readable, a JWT, the claims Entra matches on, time left, and
/// whether it is being rotated. Evaluation is pure: the file is read once by the context.
struct TokenFileCheck: DoctorCheck {
    /// Entra refuses assertions valid for longer than 25 hours (AADSTS70023).
    static let maximumLifetime = 25 * 3600
    /// Less than this left is worth a warning (the SDKs refresh 5 minutes ahead).
    static let lowRemaining = 300

    func run(_ context: DoctorContext) -> [DoctorFinding] {
        guard let path = context.tokenFilePath, let read = context.tokenFile else {
            return [.skip("token.file", "no token file to check: AZURE_FEDERATED_TOKEN_FILE is not set and --token-file was not given")]
        }
        return Self.evaluate(read, path: path, expectedAudience: context.expectedAudience, now: Int(context.now().timeIntervalSince1970))
    }

    /// The findings for a file read at `now` (Unix seconds).
    static func evaluate(_ read: TokenFileRead, path: String, expectedAudience: String, now: Int) -> [DoctorFinding] {
        switch read {
        case .unreadable(let reason):
            return [
                .fail(
                    "token.file", reason,
                    fix:
                        "mount the projected service-account token volume (the webhook adds azure-identity-token) and let this user read it (fsGroup, or the broker's group)"
                )
            ]
        case .malformed(let reason, _):
            return [
                .pass("token.file", "\(path) is readable"),
                .fail(
                    "token.jwt", "not a JWT: \(reason)",
                    fix: "point AZURE_FEDERATED_TOKEN_FILE at the projected service-account token, not at another file"),
            ]
        case .token(let token, let modified, let kubelet):
            let header = "alg=\(token.algorithm ?? "none"), kid=\(token.keyId ?? "none")"
            return [
                .pass("token.file", "\(path) is readable\(kubelet ? " (kubelet layout, ..data)" : "")"),
                .pass("token.jwt", header),
                issuer(token), subject(token), audience(token, expected: expectedAudience),
                lifetime(token, now: now), kubernetes(token),
                rotation(token, modified: Int(modified.timeIntervalSince1970), kubelet: kubelet, now: now),
            ]
        }
    }

    static func issuer(_ token: PeekedJWT) -> DoctorFinding {
        guard let issuer = token.issuer else {
            return .fail(
                "token.issuer", "no iss claim",
                fix: "use a token issued by the cluster's service-account issuer (a projected serviceAccountToken volume)")
        }
        guard HTTPSURL(issuer) != nil else {
            return .fail(
                "token.issuer", "iss=\(issuer) is not an https URL; Entra fetches its keys from <iss>/.well-known/openid-configuration",
                fix: "enable the cluster's OIDC issuer (AKS: --enable-oidc-issuer) so tokens carry a public https issuer")
        }
        return .pass("token.issuer", "iss=\(issuer)")
    }

    static func subject(_ token: PeekedJWT) -> DoctorFinding {
        guard let subject = token.subject, !subject.isEmpty else {
            return .fail("token.subject", "no sub claim", fix: "use a service-account token; its sub is system:serviceaccount:<namespace>:<name>")
        }
        return .pass("token.subject", "sub=\(subject)")
    }

    static func audience(_ token: PeekedJWT, expected: String) -> DoctorFinding {
        let shown = token.audiences.isEmpty ? "no aud claim" : "aud=\(token.audiences.joined(separator: ","))"
        guard token.audiences.contains(expected) else {
            return .fail(
                "token.audience", "\(shown); the federated credential expects \(expected) (AADSTS700212 otherwise)",
                fix:
                    "project the token with audience \(expected) (serviceAccountToken.audience), or pass --audience if your federated credential uses another"
            )
        }
        return .pass("token.audience", shown)
    }

    static func lifetime(_ token: PeekedJWT, now: Int) -> DoctorFinding {
        guard let exp = token.expiresAt else {
            return .fail("token.lifetime", "no exp claim", fix: "use a projected service-account token (they always expire)")
        }
        let validFrom = token.notBefore ?? token.issuedAt
        let times = "exp=\(DoctorText.time(exp))" + (token.notBefore.map { ", nbf=\(DoctorText.time($0))" } ?? "")
        if now >= exp {
            return .fail(
                "token.lifetime", "expired \(DoctorText.duration(now - exp)) ago (\(times)); Entra answers AADSTS700024",
                fix: "the file is stale: check that the kubelet still rotates it (token.rotation) and that the pod's volume is the projected one")
        }
        if let validFrom, validFrom > now {
            return .fail(
                "token.lifetime", "not valid for another \(DoctorText.duration(validFrom - now)) (\(times))",
                fix: "this machine's clock is behind the issuer's: check clock.skew and NTP")
        }
        if let validFrom, exp - validFrom > maximumLifetime {
            return .fail(
                "token.lifetime", "valid for \(DoctorText.duration(exp - validFrom)) (\(times)); Entra accepts at most 25 h (AADSTS70023)",
                fix: "set serviceAccountToken.expirationSeconds to 86400 or less")
        }
        if exp - now < lowRemaining {
            return .warn(
                "token.lifetime", "only \(DoctorText.duration(exp - now)) left (\(times))",
                fix: "expect a rotation now; if none comes, check token.rotation")
        }
        return .pass("token.lifetime", "\(DoctorText.duration(exp - now)) left (\(times))")
    }

    static func kubernetes(_ token: PeekedJWT) -> DoctorFinding {
        guard let k8s = token.kubernetes else {
            return .warn(
                "token.kubernetes", "no kubernetes.io claim: not a projected service-account token",
                fix: "nothing to do outside Kubernetes; in a pod, use the projected token the webhook mounts")
        }
        return .pass("token.kubernetes", "namespace=\(k8s.namespace ?? "-"), serviceaccount=\(k8s.serviceAccount ?? "-"), pod=\(k8s.pod ?? "-")")
    }

    /// The kubelet rewrites a projected token at 80 % of its lifetime (at most after 24 h).
    static func rotation(_ token: PeekedJWT, modified: Int, kubelet: Bool, now: Int) -> DoctorFinding {
        guard let iat = token.issuedAt, let exp = token.expiresAt, exp > iat else {
            return .skip("token.rotation", "no iat/exp to judge rotation by")
        }
        let due = iat + min((exp - iat) * 8 / 10, 24 * 3600)
        let evidence =
            "issued \(DoctorText.duration(max(now - iat, 0))) ago, file written \(DoctorText.duration(max(now - modified, 0))) ago, "
            + "lifetime \(DoctorText.duration(exp - iat))"
        // A minute of grace (or a tenth of the lifetime) for the kubelet's sync loop.
        let grace = max(60, (exp - iat) / 10)
        guard now > due + grace else {
            return .pass("token.rotation", "\(evidence); next rotation due in \(DoctorText.duration(max(due - now, 0)))")
        }
        let overdue = "\(evidence); a rotation was due \(DoctorText.duration(now - due)) ago and has not happened"
        return kubelet
            ? .fail(
                "token.rotation", overdue,
                fix: "the kubelet stopped refreshing the projected volume: check the node's kubelet logs and the pod's status")
            : .warn(
                "token.rotation", overdue,
                fix: "a plain file is not rotated by anyone: use the projected volume, or rewrite the file before it expires")
    }
}

/// Formatting shared by the checks.
enum DoctorText {
    /// `1h02m03s`, `45s`.
    static func duration(_ seconds: Int) -> String {
        let s = abs(seconds)
        let sign = seconds < 0 ? "-" : ""
        if s < 60 { return "\(sign)\(s)s" }
        if s < 3600 { return "\(sign)\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(sign)\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m"
    }

    /// `2026-12-06T11:00:00Z`.
    static func time(_ unix: Int) -> String {
        var seconds = time_t(unix)
        var t = tm()
        gmtime_r(&seconds, &t)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday), Int(t.tm_hour), Int(t.tm_min),
            Int(t.tm_sec))
    }
}
