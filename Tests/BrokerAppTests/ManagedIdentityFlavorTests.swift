import Testing
import TokenBrokerProtocol

/// `ManagedIdentityFlavor`, the table the compatibility endpoints and the relay share: each
/// protocol's token and error, byte for byte.
@Suite struct ManagedIdentityFlavorTests {
    private func token(_ flavor: ManagedIdentityFlavor, expiresIn: Int64 = 60) -> ManagedIdentityFlavor.Answer {
        flavor.tokenAnswer(
            accessToken: "t", expiresOn: 1_764_400_000, expiresIn: expiresIn, notBefore: 1_764_396_400, clientId: "c", resource: "r",
            tokenType: "Bearer")
    }

    @Test func tokensInEachProtocolsShape() {
        #expect(
            token(.appService).body
                == #"{"access_token":"t","client_id":"c","expires_on":"1764400000","not_before":"1764396400","resource":"r","token_type":"Bearer"}"#)
        #expect(
            token(.imds).body
                == #"{"access_token":"t","client_id":"c","refresh_token":"","expires_in":"60","expires_on":"1764400000","not_before":"1764396400","resource":"r","token_type":"Bearer"}"#
        )
        #expect(token(.imds, expiresIn: -3).body.contains(#""expires_in":"0""#))
        #expect(
            token(.appService2017).body == #"{"access_token":"t","expires_on":"11/29/2025 07:06:40 +00:00","resource":"r","token_type":"Bearer"}"#)
        #expect(token(.appService).status == 200 && token(.appService).headers.isEmpty)
    }

    @Test func errorsInEachProtocolsShapeWithTheirStatus() {
        let throttled = ManagedIdentityFlavor.appService.errorAnswer(WireError(code: .throttled, message: "slow", retryable: true, retryAfter: 3))
        #expect(throttled.status == 429)
        #expect(throttled.body == #"{"statusCode":429,"message":"slow","error":"throttled"}"#)
        #expect(throttled.headers.map { "\($0.name): \($0.value)" } == ["Retry-After: 3"])

        let unavailable = ManagedIdentityFlavor.imds.errorAnswer(WireError(code: .forbidden, message: "no"), status: 503)
        #expect(unavailable.status == 503)
        #expect(unavailable.body == #"{"error":"forbidden","error_description":"no"}"#)
        #expect(unavailable.headers.isEmpty)
    }
}
