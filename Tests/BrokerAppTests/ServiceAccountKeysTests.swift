import Foundation
import Logging
import Synchronization
import Testing
import TokenExchange

@testable import BrokerApp

/// RS256 checks of the cluster's service-account tokens, against signatures made by Python's
/// `cryptography` (OpenSSL): keys of 2048, 3072, 4096 (e = 3) and 2056 bits.
@Suite("Service-account keys (JWKS, RS256)")
struct ServiceAccountKeysTests {
    /// kid, n, e, and a JWT signed by that key.
    static let vectors: [(kid: String, n: String, e: String, jwt: String)] = [
        (
            "k2048",
            [
                "k9NgvSyZ3GKh5yzdtpyfJ8ZFwHjtKaMLNHRtPvWPXiGBKFoJsi1ObmHj0hAMUwqCvvcwBWvCI63ZdbG8XfiycxamUc-DX_GI",
                "pMAyo5KjY4-8muWuEi8vYdmSPT7Ct2SiaiQitdVarsvhNtwixKnidgTMGcXg5KoBApRAPM-ohoxbSsp3QyMkGls2OZxFJcGp",
                "bZbT5lx77IcAd4afIPRVhOBKnV4-uUcIJwvj9ZwkCZ42TLLJ81j5fILDzrKNXIXrSMJMdt7BekUjpogXMI67WWfUDAvbMCro",
                "v5FCLun-nMhL-vQLZx53AFZEIR9ABm-ka1RKEAff0Q18DTJ_4Mm60w",
            ].joined(),
            "AQAB",
            [
                "eyJhbGciOiAiUlMyNTYiLCAia2lkIjogImsyMDQ4IiwgInR5cCI6ICJKV1QifQ.eyJpc3MiOiAiaHR0cHM6Ly9pc3N1ZXIuZ",
                "XhhbXBsZSIsICJzdWIiOiAic3lzdGVtOnNlcnZpY2VhY2NvdW50OnRlYW0tYTphcGkiLCAiYXVkIjogWyJhcGk6Ly9BenVyZ",
                "UFEVG9rZW5FeGNoYW5nZSJdLCAiZXhwIjogNDEwMjQ0NDgwMH0.FPvrWJxbD7IV7eX61g72h-yls7eV2FQFR-_wiNfOVPFf3",
                "FA1DjhtbI1ZAVE9prRBuOVhiat3iiEt62vRlXb402EC_d9AQ1yP2bdwsuGaq7b-JUjg2W6kA6sqCFIabw0tVLTRJzAkz6UD8",
                "mELgkiJJbmMk_xIy0mYZ8mwlQ_TXwUq5A8SrTaEx07TuHYemxVP32qZg_MS1ZzyQGHNan4lEvrPFaqotYUGFiTye38K0Frdy",
                "UuLBOgakUl4yY4KASJmdlO6GXnpSQMSrAFJvvAgteu0v7oVtY1w_4t-cIbbQdgJjQxZYJJ0m-0UivPpS5S8xiLqXNcyG3lBy",
                "6CZfZVx8w",
            ].joined()
        ),
        (
            "k3072",
            [
                "rU6XXbPJRrpUBKJpyT6swbtHLwhT2GscACL55B1GKiW9pMrSQyB0ZnSjb_2fmg6Hskxy55jKaLWavKdWcnYwUj91QYkOZBmu",
                "cOR6kcVJ6W1EZnVWiNtKxcqdrTaIviiDPeA42FbsGAtQbgN5UZpdJ7orQTNNO2dG_-WuNvKv6ZrTSHAQmkz3KVWgxAlrxzPV",
                "8aT4HOv-r-F-PQUBwtBYWxpay-xHOwct_3SoGd6h9t5DgFs-XHdpnjmhdP_jKGWIvofVMlGwfuAfYsl7_uZrbTZP8W_65oiQ",
                "8Ek8LvbamJGVdYz2UVlP17A8Cg3jRjFyZ2lfk8Z8XcIZv3x8LwpiL0JcBYzvwxEfJLGhAfcEUbL80cvZBQFTKsZxB3bGaM48",
                "vGLguRkVxiCWXKJ-WSTwzn7a0-nsqUNlIH4a0ritRzOTmoKwaWO7pNaQ0aaKzaHxlkEfowNYfFCwvcfoDY49Yl2IRU-puXsY",
                "R6GcayowTLEKfpL0Z349J8uD3hCPCxpj",
            ].joined(),
            "AQAB",
            [
                "eyJhbGciOiAiUlMyNTYiLCAia2lkIjogImszMDcyIiwgInR5cCI6ICJKV1QifQ.eyJpc3MiOiAiaHR0cHM6Ly9pc3N1ZXIuZ",
                "XhhbXBsZSIsICJzdWIiOiAic3lzdGVtOnNlcnZpY2VhY2NvdW50OnRlYW0tYTphcGkiLCAiYXVkIjogWyJhcGk6Ly9BenVyZ",
                "UFEVG9rZW5FeGNoYW5nZSJdLCAiZXhwIjogNDEwMjQ0NDgwMH0.RsI5r2uTAAKNrAfAgSu0L5ddeDBgCSEQeq58r0hnbNo2M",
                "FRFyP4gtsQq0QqAa2kahtXbeBLwEEsyoedvWij6tnE5Kh7oyV6NBoccq5GQxilh2IM_ff7zIlgHWYjjEHjD5Gjgil9B9bG9L",
                "N0Sko16kpZcPLpkE1WuMhyFcbSXmfTcj1Z_558mRGCON193I029QOEVaERCDA6JcO6ZQCJXcj5iAbiMT13DojCd-j9btun_t",
                "zBfJNXj8ZbBvYFoEo0SJlf7h8DDmhV9PoDeqIS-V4Lfcvp5Ipe8Qf-5-phC0Glig21Q6TzwT4tKlGIjliZDwfvhrzJ1_Dz9Q",
                "vzxqloCd3qScjph9EO--AoBVqc056DDaXjHgwBL_CFWyRTTsMlXWe2irYkgv0ks_PmMFwbOY7cqwaOsfnO__vMg6HXaV0u1K",
                "GlyuCZrudWL69wfCUkMTn_Hk8HB9ISWlBzlwPPL9krwkU-z5oweoqOIJrbMgO-GS4CRzG4UIRem_0wEU1uR",
            ].joined()
        ),
        (
            "k4096",
            [
                "0RIEH2HvUdqOq-ec-rz_EtXS-ug_bfTr1QNwvTTfCqdA056vlDRQkXKO-XWhFtzH032S5paP5tMg6vfw3UY2SGlsg2mo9uV_",
                "go-tJ8gSZYqLSQLJQH5FvfckW-12hKZ45SAXoNGZSPjOwaguS1NfKmacF_Sn5_OkVMipu-8cDqlRBudt9RGjh1jz2xzoKXfO",
                "KbCqjzTH9I0EWaIHxxJsanfvbmYci_WIUWbU2TYWK0LrmPSf4EbqC3mllRGzqZgjroRxxU7zUR8yogKvq0poLFamohWe2J6O",
                "_n7O1waKFaYrk5664ZMC3XTdxSsZisEzy3pFLlvixnfe_SkmJ3QAQNS0LGX8cOrwXCq4_Jdb7dieFSiaB_oT_Uk4Y3OKYZ_g",
                "I92PXILLdETv1iV4aNyRxMMTUxYpTRGly3iehXirN3mWx6Igz2lCLwWrEdbeuepRM-41TQusj_Pj7zIl_buzot6IuK1u-H6u",
                "4E2xMVc9b9PUOTo-nNYDxYYRM_TQ7CDRU4XEJMAug63rk8-MZA9z9_Wepk3Wr3Mfu49cSjvr59NkftH1PCj6HYo6u49ts-GG",
                "ZyNoHlCXpCdtGCDL8fnB3AT_Vvg09018-WYWFHqqX3rHcni7vd1XCODJZdOYd3xB3LnXtqp5PUq3xme2dBSEsipb-5F-9jMN",
                "qnDvg4DQ7xk",
            ].joined(),
            "Aw",
            [
                "eyJhbGciOiAiUlMyNTYiLCAia2lkIjogIms0MDk2IiwgInR5cCI6ICJKV1QifQ.eyJpc3MiOiAiaHR0cHM6Ly9pc3N1ZXIuZ",
                "XhhbXBsZSIsICJzdWIiOiAic3lzdGVtOnNlcnZpY2VhY2NvdW50OnRlYW0tYTphcGkiLCAiYXVkIjogWyJhcGk6Ly9BenVyZ",
                "UFEVG9rZW5FeGNoYW5nZSJdLCAiZXhwIjogNDEwMjQ0NDgwMH0.cxr0_ZCam-BbMvQrP9QwjWV1j0qTcz4O5d0jKjezVCCUo",
                "-ZS51tdimVfDWbewQeVz91M_2FHZ5HR8AJqq71CfpaWNE5UEwGZSys01375sUXYBHprLmCCGLqY7s8DEO2862JjOWzzjbI83",
                "bKRN_eR-QIBU0jHHf78cLOrpHDf6WCib3JwJ79vq0P7Qu8CBC1HyIewTvzngMBLPrz_rcg3VJrhqU9xKCLWPmdU1XX2XasXf",
                "7xEKWCCmt0TSODx2fTkdhjPIzocDXg7k8m1cyxd25O6otdwKVDspauLDjnm_YoTnRPe9tRYn8c5IMEehEMfiIayQgk8At9d1",
                "EaD5pk4gCv-nFNIve_HBruXG0YFw7-oOoQixMyUrykl7kGp6D3FN0tJoiMY969fLpClHPKjgECSgvLg40hSm7R0d00vDVvwu",
                "s-NmcLGUoEOlS-SVdaxth76pG889bLNZ2zTKbjst3D8UyaxFurYtsvU_enEfls0donWOEzFS_f6BpuQouumMuMazW74pj1SL",
                "2IZxFn0YmBdv9nXv5rTn7WzCTrf4pnHDB3FXtkZYdVMg2J3SvO3d0J_t7AKxpR2znOMNYyl2VYYe6dvfyA8lz2f596H3MeNN",
                "8KHE_fGWv6nDgv1IdFg1Fj8EEuv8j8V0H7yiJqLxzRJOOscu_QDZ12K-A_fryU",
            ].joined()
        ),
        (
            "k2056",
            [
                "q9Q7Fd0aW4Oz8TiyRCD_k6RkcIQB8qsegL4MRseaxq73xOcEC4CbN2IsmURZqudKY2_WfbLF-_9exSoGqeY6TRGCJpxRBFiq",
                "TcRPXTzF9dCSVAZ33nTkZSwbjVtL0m2YMky1HHN--o14SmzeMP7896dOE9cDuHK_kXhRjqRZMWptFzhAObMeWJMtDl2qb4aQ",
                "FllkYNwNp5LJ0s2K6vguFv56mUjjsJnHNJVRT_WxiGUPAcjD5r6RQCQr4fgpUuXCoGyGqYg_FMHU_lA93ZEI12UApvGstfno",
                "A_s6yATModoDo3JG-sDoOiDlYV6sr7hauymN52cIkrhPIBzCA-FBlD0",
            ].joined(),
            "AQAB",
            [
                "eyJhbGciOiAiUlMyNTYiLCAia2lkIjogImsyMDU2IiwgInR5cCI6ICJKV1QifQ.eyJpc3MiOiAiaHR0cHM6Ly9pc3N1ZXIuZ",
                "XhhbXBsZSIsICJzdWIiOiAic3lzdGVtOnNlcnZpY2VhY2NvdW50OnRlYW0tYTphcGkiLCAiYXVkIjogWyJhcGk6Ly9BenVyZ",
                "UFEVG9rZW5FeGNoYW5nZSJdLCAiZXhwIjogNDEwMjQ0NDgwMH0.WKvERowmTzxk4o4hw-uB0t41uKZD1puOwBjdWVn1b14O0",
                "FD72-t3pXUamJ1TXJvPxOX6wY_QsjRSEebegR59ZvcrsiPmzY4WdhQn6nWLCw5qyTyv5-iItffMTKywCRKUuNSNs6J6S2Up-",
                "Ha9dNSeqtKDZKvMaTeSZqhGEdbn7EShT_zXo0dceq-DNhUrulqmKt5NeuEaAeH-Z6hAdYHQtOBKzoiQWieK8p_78R_B31aN0",
                "BJed15zZs1yGjtVmqRVY8z9Y0GPJ7Sz1H4u2auC5NwL3eGeY5pwFrkV3sjpD6QdrgUlvxXqunilkb6SYsc8HUYrKRCpk8ADU",
                "LeZUHmJovk",
            ].joined()
        ),
    ]

    static func jwks(_ vectors: [(kid: String, n: String, e: String, jwt: String)]) -> [UInt8] {
        Array(
            ("{\"keys\":["
                + vectors.map { #"{"kty":"RSA","use":"sig","alg":"RS256","kid":"\#($0.kid)","n":"\#($0.n)","e":"\#($0.e)"}"# }
                .joined(separator: ",") + "]}").utf8)
    }

    @Test("a token signed by a key of the set is valid; one changed anywhere is not")
    func signatures() throws {
        let keys = try ServiceAccountKeys(jwks: Self.jwks(Self.vectors))
        for vector in Self.vectors {
            #expect(keys.verdict(vector.jwt) == .valid, "\(vector.kid)")
            let parts = vector.jwt.split(separator: ".").map(String.init)
            // Another payload under the same signature (one claim changed).
            let payload = Array(parts[1].utf8)
            let flipped = String(
                decoding: payload.prefix(10) + [payload[10] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")] + payload.dropFirst(11),
                as: UTF8.self)
            #expect(keys.verdict("\(parts[0]).\(flipped).\(parts[2])") == .invalid, "\(vector.kid): payload changed")
            // The signature changed in its last byte, and cut short.
            var signature = Array(parts[2].utf8)
            signature[signature.count - 2] = signature[signature.count - 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            #expect(
                keys.verdict("\(parts[0]).\(parts[1]).\(String(decoding: signature, as: UTF8.self))") == .invalid, "\(vector.kid): signature changed")
            #expect(keys.verdict("\(parts[0]).\(parts[1]).\(parts[2].dropLast(8))") == .invalid, "\(vector.kid): signature short")
            #expect(keys.verdict("\(parts[0]).\(parts[1]).") == .invalid, "\(vector.kid): no signature")
        }
    }

    @Test("another key's signature, an unknown kid, another algorithm and a key set without the signer are told apart")
    func verdicts() throws {
        let first = Self.vectors[0]
        let others = try ServiceAccountKeys(jwks: Self.jwks(Array(Self.vectors.dropFirst())))
        #expect(others.verdict(first.jwt) == .unknownKey(first.kid))
        // The first token's header and payload, with the second key's kid: not that key's signature.
        let swapped = try ServiceAccountKeys(jwks: Self.jwks([(kid: first.kid, n: Self.vectors[1].n, e: Self.vectors[1].e, jwt: "")]))
        #expect(swapped.verdict(first.jwt) == .invalid)
        let keys = try ServiceAccountKeys(jwks: Self.jwks(Self.vectors))
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."  // {"alg":"none"}
        #expect(keys.verdict(none) == .unsupported("none"))
        let hmac = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsyMDQ4In0.eyJzdWIiOiJ4In0.c2ln"  // {"alg":"HS256","kid":"k2048"}
        #expect(keys.verdict(hmac) == .unsupported("HS256"), "never an HMAC keyed with the public key")
        #expect(keys.verdict("garbage") == .invalid)
    }

    @Test(
        "a key set that cannot be used is refused with the reason",
        arguments: [
            ("not json", "is not a JWKS document"),
            (#"{"keys":[]}"#, "holds no RSA signing key"),
            (#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#, "holds no RSA signing key"),
            (#"{"keys":[{"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"}]}"#, "kid \"short\") is not a usable RSA key"),
        ])
    func unusable(document: String, reason: String) {
        #expect {
            try ServiceAccountKeys(jwks: Array(document.utf8))
        } throws: { error in
            (error as? ServiceAccountKeys.KeySetError)?.message.contains(reason) == true
        }
    }

    @Test(
        "a token naming a key not held loads the keys again: the first at once, then at most every reloadInterval; a failed load keeps the keys held")
    func reloads() throws {
        let (first, second, third) = (Self.vectors[0], Self.vectors[1], Self.vectors[2])
        func assertion(_ jwt: String) throws -> Assertion { try Assertion(jwt: jwt, origin: "test", loadedAt: Date()) }
        let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let loads = Mutex(0)
        let rotated = try ServiceAccountKeys(jwks: Self.jwks([first, second]))
        let keys = ClusterKeys(
            source: .file("/keys"), keys: try ServiceAccountKeys(jwks: Self.jwks([first])), reloadInterval: .seconds(3600), logger: quiet
        ) { () throws(ServiceAccountKeys.KeySetError) in
            loads.withLock { $0 += 1 }
            return rotated
        }
        #expect(keys.isSignedByCluster(try assertion(first.jwt)) && loads.withLock { $0 } == 0, "a key held: no load")
        #expect(keys.isSignedByCluster(try assertion(second.jwt)), "the cluster's new key, loaded at the first token naming it")
        #expect(!keys.isSignedByCluster(try assertion(third.jwt)), "a key the cluster does not have")
        #expect(loads.withLock { $0 } == 1, "the second unknown key within the interval loads nothing")

        let failing = ClusterKeys(
            source: .file("/keys"), keys: try ServiceAccountKeys(jwks: Self.jwks([first])), logger: quiet
        ) { () throws(ServiceAccountKeys.KeySetError) in throw ServiceAccountKeys.KeySetError("unreachable") }
        #expect(!failing.isSignedByCluster(try assertion(second.jwt)))
        #expect(failing.isSignedByCluster(try assertion(first.jwt)), "the keys held before a failed load stay")
    }
}
