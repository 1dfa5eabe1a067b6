import Testing
import TokenBrokerProtocol

@testable import BrokerServer

/// A connection repeats its last answer only to a request that asks the same: the node-mode
/// fields count, so a relay that reuses one connection for two client ids gets two answers.
@Suite struct AskSameTests {
    static let base = BrokerRequest(op: "token", id: .number(1), resource: "https://vault.azure.net")

    @Test func onlyTheIDMayDiffer() {
        var other = Self.base
        other.id = .number(2)
        #expect(Self.base.asksSame(as: other))
    }

    @Test(arguments: ["clientId", "tenantId", "volume"])
    func nodeModeFieldsMakeADifferentRequest(_ field: String) {
        var other = Self.base
        switch field {
        case "clientId": other.clientId = "x"
        case "tenantId": other.tenantId = "x"
        default: other.volume = "x"
        }
        #expect(!Self.base.asksSame(as: other))
        #expect(!other.asksSame(as: Self.base))
    }
}
