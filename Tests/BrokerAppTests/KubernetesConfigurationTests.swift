import AssertionSources
import Testing

@testable import BrokerApp

@Suite("kubernetes: (node mode) in configuration")
struct KubernetesConfigurationTests {
    private func load(_ yaml: String) throws(ConfigurationError) -> BrokerConfiguration {
        try ConfigurationLoader.load(yaml: yaml, origin: "config.yaml", environment: [:])
    }

    @Test("absent: off; with the cluster's keys alone: on with the defaults")
    func defaults() throws {
        #expect(try load("identities: []\n").kubernetes == nil)
        let on = try #require(try load("kubernetes: { serviceAccountKeys: /etc/keys/jwks.json }\n").kubernetes)
        #expect(on.serviceAccountKeys == "/etc/keys/jwks.json")
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
        "each mistake is named by its field",
        arguments: [
            ("kubernetes: { podsDirectory: pods }\n", "kubernetes.podsDirectory", "absolute path"),
            ("kubernetes: {}\n", "kubernetes.serviceAccountKeys", "required: the JWKS file of the cluster's service-account issuer"),
            ("kubernetes: { serviceAccountKeys: ~ }\n", "kubernetes.serviceAccountKeys", "required: the JWKS file"),
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
