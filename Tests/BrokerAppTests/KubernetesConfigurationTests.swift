import AssertionSources
import Testing

@testable import BrokerApp

@Suite("kubernetes: (node mode) in configuration")
struct KubernetesConfigurationTests {
    private func load(_ yaml: String, environment: [String: String] = [:]) throws(ConfigurationError) -> BrokerConfiguration {
        try ConfigurationLoader.load(yaml: yaml, origin: "config.yaml", environment: environment)
    }

    @Test("absent: off; with the cluster's keys alone: on with the defaults")
    func defaults() throws {
        #expect(try load("identities: []\n").kubernetes == nil)
        let on = try #require(try load("kubernetes: { serviceAccountKeys: /etc/keys/jwks.json }\n").kubernetes)
        #expect(on.serviceAccountKeys == .file("/etc/keys/jwks.json"))
        #expect(on.podsDirectory == "/var/lib/kubelet/pods")
        #expect(on.audience == "api://AzureADTokenExchange")
        #expect(on.callerEnvironment == false && on.serviceAccounts.isEmpty && on.tenantId == nil)
    }

    @Test("every field, and service accounts mapped to exchanges, first match wins")
    func everything() throws {
        let settings = try #require(
            try load(
                """
                kubernetes:
                  serviceAccountKeys: /etc/keys/jwks.json
                  podsDirectory: /srv/kubelet/pods
                  audience: api://custom
                  callerEnvironment: true
                  tenantId: 72f988bf-0000-4000-8000-00000000d0e1
                  authorityHost: https://login.microsoftonline.us
                  forgetAfterSeconds: 5
                  serviceAccounts:
                    - { namespace: team-a, name: api, exchange: { entra: { tenantId: t, clientId: 0a11ce00-0000-4000-8000-00000000aaaa } } }
                    - { namespace: "*", name: "*", exchange: { awsSts: { roleArn: "arn:aws:iam::123456789012:role/all" } } }
                """
            ).kubernetes)
        #expect(settings.podsDirectory == "/srv/kubelet/pods" && settings.audience == "api://custom" && settings.callerEnvironment)
        #expect(settings.authorityHost == "https://login.microsoftonline.us" && settings.forgetAfterSeconds == 5)
        #expect(settings.serviceAccounts.count == 2)
        #expect(settings.serviceAccounts[0].matches(ServiceAccount(namespace: "team-a", name: "api")))
        #expect(!settings.serviceAccounts[0].matches(ServiceAccount(namespace: "team-a", name: "web")))
        #expect(settings.serviceAccounts[1].matches(ServiceAccount(namespace: "x", name: "y")))
    }

    @Test(
        "serviceAccountKeys from the API server: in-cluster, found at start from the environment Kubernetes sets, or named; the pod's files by default"
    )
    func keysFromTheAPIServer() throws {
        let inCluster = try #require(try load("kubernetes: { serviceAccountKeys: { apiServer: in-cluster } }\n").kubernetes)
        #expect(inCluster.serviceAccountKeys == .apiServer(APIServerKeySettings(url: nil)), "check-config runs outside a pod too")
        guard case .apiServer(let server) = inCluster.serviceAccountKeys else { return }
        #expect(server.caFile == "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        #expect(server.tokenFile == "/var/run/secrets/kubernetes.io/serviceaccount/token")
        #expect(
            server.jwksURL(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"])
                == "https://10.96.0.1:443/openid/v1/jwks")
        #expect(
            server.jwksURL(environment: ["KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "6443"])
                == "https://[fd00:10:96::1]:6443/openid/v1/jwks")
        #expect(server.jwksURL(environment: [:]) == nil)
        #expect(server.jwksURL(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "https"]) == nil)

        let named = try #require(
            try load("kubernetes: { serviceAccountKeys: { apiServer: \"https://api.example:6443/\", caFile: /etc/ca.pem, tokenFile: /run/token } }\n")
                .kubernetes)
        #expect(
            named.serviceAccountKeys
                == .apiServer(APIServerKeySettings(url: "https://api.example:6443", caFile: "/etc/ca.pem", tokenFile: "/run/token")))
        #expect(named.serviceAccountKeys.origin == "https://api.example:6443/openid/v1/jwks")
    }

    @Test(
        "each mistake is named by its field",
        arguments: [
            ("kubernetes: { podsDirectory: pods }\n", "kubernetes.podsDirectory", "absolute path"),
            ("kubernetes: {}\n", "kubernetes.serviceAccountKeys", "required: where the cluster's service-account keys are"),
            ("kubernetes: { serviceAccountKeys: ~ }\n", "kubernetes.serviceAccountKeys", "required: where"),
            (
                "kubernetes: { serviceAccountKeys: { apiServer: \"http://10.0.0.1\" } }\n", "kubernetes.serviceAccountKeys.apiServer",
                "https://HOST[:PORT]"
            ),
            (
                "kubernetes: { serviceAccountKeys: { apiServer: \"https://10.0.0.1/openid/v1/jwks\" } }\n", "kubernetes.serviceAccountKeys.apiServer",
                "without a path"
            ),
            ("kubernetes: { serviceAccountKeys: { caFile: /ca.crt } }\n", "kubernetes.serviceAccountKeys.apiServer", "required"),
            (
                "kubernetes: { serviceAccountKeys: { apiServer: \"https://a\", tokenFile: token } }\n", "kubernetes.serviceAccountKeys.tokenFile",
                "absolute path"
            ),
            ("kubernetes: { serviceAccountKeys: { apiServer: \"https://a\", ca: /c } }\n", "kubernetes.serviceAccountKeys.ca", "unknown field"),
            ("kubernetes: { serviceAccountKeys: jwks.json }\n", "kubernetes.serviceAccountKeys", "absolute path"),
            ("kubernetes: { serviceAccountKeys: /k, authorityHost: \"http://login.example\" }\n", "kubernetes.authorityHost", "https"),
            ("kubernetes: { podDirectory: /x }\n", "kubernetes.podDirectory", "unknown field"),
            (
                "kubernetes: { serviceAccountKeys: /k, serviceAccounts: [ { namespace: a, name: b, exchange: { none: {} } } ] }\n",
                "kubernetes.serviceAccounts[0].exchange",
                "none would hand"
            ),
            (
                "kubernetes: { serviceAccountKeys: /k, serviceAccounts: [ { namespace: a, exchange: { none: {} } } ] }\n",
                "kubernetes.serviceAccounts[0].name", "required"
            ),
        ])
    func mistakes(yaml: String, path: String, message: String) {
        do {
            _ = try load(yaml)
            Issue.record("loaded")
        } catch {
            #expect(error.issues.contains { $0.path == path && $0.message.contains(message) }, "\(error.issues)")
        }
    }
}
