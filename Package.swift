// swift-tools-version: 6.1
import PackageDescription

#if canImport(Glibc)
import Glibc
#endif

// `--version`: $TOKENBROKER_VERSION (scripts/package sets the package's), else the VERSION
// file with the commit of the checkout being built (`0.6.0+git.1a2b3c4d5e6f`).
let buildVersion: String = {
    if let given = Context.environment["TOKENBROKER_VERSION"], !given.isEmpty { return given }
    var base = "0.0.0"
    #if canImport(Glibc)
    if let file = fopen("\(Context.packageDirectory)/VERSION", "r") {
        var line = [CChar](repeating: 0, count: 64)
        if fgets(&line, Int32(line.count), file) != nil {
            base = String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        fclose(file)
    }
    #endif
    let commit = Context.gitInformation.map { "+git.\($0.currentCommit.prefix(12))" } ?? ""
    return base + commit
}()

// The folder layout mirrors the architecture (docs/architecture.md):
// a pure exchange core, adapters around it (upstream HTTP, assertion sources,
// cache, socket server), the app that wires them, and thin executables (the daemon, the
// CLI, the doctor and the dev provider).
let package = Package(
    name: "TokenBroker",
    // Linux only (epoll, inotify, SO_PEERCRED, Glibc, libsystemd): it does not build on macOS. The line only
    // sets the floor a macOS editor indexes against (Mutex needs 15); Linux builds ignore it.
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tokenbrokerd", targets: ["tokenbrokerd"]),
        .executable(name: "tokenbroker", targets: ["tokenbroker"]),
        .executable(name: "tokenbroker-doctor", targets: ["tokenbroker-doctor"]),
        .executable(name: "tokenbroker-dev-provider", targets: ["tokenbroker-dev-provider"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // JSON read into untyped values (`UntypedJSON`) and whitespace trimming, on the standard
        // library alone: shared by the exchange core and the CLI, which links no Foundation.
        .target(name: "PlainJSON"),

        // The exchange core: value types, request builders, response parsers,
        // refresh arithmetic. No sockets, files, environment or clock reads.
        .target(name: "TokenExchange", dependencies: ["PlainJSON"]),

        // The versioned wire contract of the Unix socket, shared by server and CLI.
        .target(name: "TokenBrokerProtocol", dependencies: ["CBuildInfo"]),
        // The version string, given at build time (`buildVersion` below).
        .target(name: "CBuildInfo", cSettings: [.define("TOKENBROKER_VERSION", to: "\"\(buildVersion)\"")]),

        // Foundation's `Thread` on pthreads, for the modules on FoundationEssentials.
        .target(name: "DetachedThread"),

        // Talking to token services: an HTTPTransport on AsyncHTTPClient.
        .target(
            name: "UpstreamHTTP",
            dependencies: [
                "TokenExchange",
                "PlainJSON",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Where assertions come from: projected token files (inotify + poll).
        .target(
            name: "AssertionSources",
            dependencies: [
                "TokenExchange",
                "PlainJSON",
                "DetachedThread",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // One token per (identity, scope): single flight, proactive refresh, LRU.
        .target(
            name: "TokenCache",
            dependencies: [
                "TokenExchange",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Exec plugins: assertion sources and exchanges as child processes speaking JSON.
        .target(
            name: "ExecPlugins",
            dependencies: [
                "TokenExchange",
                "PlainJSON",
                "DetachedThread",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // SwiftNIO listeners: NDJSON and HTTP/1.1 sniffed on one Unix socket.
        .target(
            name: "BrokerServer",
            dependencies: [
                "TokenBrokerProtocol",
                "TokenExchange",
                "PlainJSON",
                "CEpoll",
                "CSocketDiag",
                "DetachedThread",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // A local OIDC issuer and Entra-compatible token service for --dev and tests.
        .target(
            name: "DevIdentityProvider",
            dependencies: [
                "TokenExchange",  // the one Base64URL and form codec
                "DetachedThread",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // libsystemd, reached only through SystemdSupport.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CMalloc"),
        // libyaml, the configuration's YAML parser (Yams bundled it, but imports all of Foundation).
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        // epoll, eventfd and accept4 for BrokerServer's own event loop.
        .systemLibrary(name: "CEpoll"),
        // NETLINK_SOCK_DIAG: the owner of one loopback TCP connection, for the compat listener.
        .systemLibrary(name: "CSocketDiag"),

        // sd_notify, watchdog, socket activation and journald: the only module that touches libsystemd.
        .target(
            name: "SystemdSupport",
            dependencies: [
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Configuration and the ServiceGroup wiring of everything above.
        .target(
            name: "BrokerApp",
            dependencies: [
                "TokenExchange",
                "PlainJSON",
                "TokenBrokerProtocol",
                "UpstreamHTTP",
                "AssertionSources",
                "TokenCache",
                "BrokerServer",
                "ExecPlugins",
                "SystemdSupport",
                "CMalloc",
                "CYAML",
                "DetachedThread",
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        .executableTarget(
            name: "tokenbrokerd",
            dependencies: ["BrokerApp", "TokenBrokerProtocol", "CommandLineTable"]
        ),
        // The dev issuer and Entra emulator, which `tokenbrokerd --dev` runs as its child: its
        // RS256 keys and generated CA need swift-crypto, swift-certificates and jwt-kit, which
        // the daemon then does not carry (docs/benchmarks.md, sixth round).
        .executableTarget(
            name: "tokenbroker-dev-provider",
            dependencies: [
                "BrokerApp", "DevIdentityProvider", "DetachedThread",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The blocking NDJSON client of the socket, shared by the CLI and the doctor.
        .target(name: "BrokerClient", dependencies: ["TokenBrokerProtocol", "PlainJSON"]),
        // The command-line table of the daemon and the CLI: parser, help, usage errors,
        // completions and the manual page's JSON, without swift-argument-parser's reflection
        // (and FoundationEssentials) at every start.
        .target(name: "CommandLineTable", dependencies: ["TokenBrokerProtocol"]),
        // The CLI runs in every pod as `tokenbroker relay`: it depends on the wire types, the
        // socket and the standard library only — no Foundation, no ArgumentParser, no TLS or
        // HTTP stack (docs/benchmarks.md, sixth round: 13.3 → 6.6 MiB stripped).
        .executableTarget(
            name: "tokenbroker",
            dependencies: ["TokenBrokerProtocol", "BrokerClient", "PlainJSON", "DetachedThread", "CommandLineTable", "CSocketDiag"]
        ),
        // `tokenbroker doctor` (which execs it): its HTTPS checks (clock skew, issuer keys) use
        // the broker's own transport, so it trusts what the broker trusts — NIO, AsyncHTTPClient
        // and BoringSSL, 11 MiB the CLI would otherwise carry into every pod.
        .executableTarget(
            name: "tokenbroker-doctor",
            dependencies: [
                "TokenBrokerProtocol", "BrokerClient", "UpstreamHTTP", "TokenExchange",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // The benchmark's SwiftNIO reference server (bench/run.py), not part of the product.
        .executableTarget(
            name: "tokenbroker-nio-floor",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            path: "bench/NIOFloor"),
        .testTarget(name: "TokenExchangeTests", dependencies: ["TokenExchange", "PlainJSON", "TestRandom"]),
        .testTarget(name: "CommandLineTableTests", dependencies: ["CommandLineTable"]),
        // The doctor's pure parts (its evaluations), through `@testable import tokenbroker_doctor`,
        // and BrokerClient against a real socket.
        .testTarget(
            name: "TokenBrokerCLITests", dependencies: ["tokenbroker-doctor", "BrokerClient", "TokenBrokerProtocol", "TokenExchange", "OffPool"]),
        .testTarget(
            name: "TokenCacheTests",
            dependencies: ["TokenCache", "TokenExchange", "ManualClock", .product(name: "Logging", package: "swift-log")]
        ),
        // A `Clock` tests advance by hand; shared by the test targets that inject time.
        .target(name: "ManualClock", path: "Tests/ManualClock"),
        // `SeededRandom`: a seeded generator for tests with random inputs (TOKENBROKER_TEST_SEED).
        .target(name: "TestRandom", path: "Tests/TestRandom"),
        // `offPool`: blocking test code on a thread of its own; shared by the socket tests.
        .target(name: "OffPool", path: "Tests/OffPool"),
        .testTarget(
            name: "AssertionSourcesTests",
            dependencies: ["AssertionSources", "TokenExchange", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "ExecPluginsTests",
            dependencies: ["ExecPlugins", "TokenExchange", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "BrokerServerTests",
            dependencies: [
                "BrokerServer", "TokenBrokerProtocol", "TokenExchange", "OffPool", "TestRandom",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "BrokerAppTests",
            dependencies: [
                "BrokerApp", "TokenExchange", "ManualClock", "TestRandom",
                // The reference SHA256Digest is checked against.
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "UpstreamHTTPTests",
            dependencies: [
                "UpstreamHTTP", "TokenExchange", "TestRandom",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "DevIdentityProviderTests",
            dependencies: [
                "DevIdentityProvider",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Logs the records SystemdSupportTests hands it through JournalLogHandler, in a mount
        // namespace whose journal socket the test reads; a test helper, not part of the product.
        .executableTarget(
            name: "journal-log-writer",
            dependencies: ["SystemdSupport", .product(name: "Logging", package: "swift-log")],
            path: "Tests/JournalLogWriter"),
        .testTarget(name: "SystemdSupportTests", dependencies: ["SystemdSupport", "OffPool"], exclude: ["journal_socket.py"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "TokenBrokerProtocol", "OffPool",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")]
        ),
    ]
)

// libFuzzer targets (docs/fuzzing.md), declared only when TOKENBROKER_FUZZ=1.
//
// Each is an executable whose `LLVMFuzzerTestOneInput` libFuzzer calls with
// generated inputs. With TOKENBROKER_FUZZ=1 this package's own modules are compiled
// with `-sanitize=fuzzer,address` (coverage feedback and ASan where our code is) and
// the fuzz executables link libFuzzer; dependencies keep their normal flags, so a
// fuzz build reuses the dependencies of the normal debug build in `.build` and only
// recompiles our modules (minutes, not the half hour an instrumented rebuild of
// NIO, BoringSSL and AsyncHTTPClient takes on two cores). `scripts/fuzz` sets the
// variable; a plain `swift build` / `swift test` never sees the fuzz targets, and
// the next plain build recompiles our modules without the flags. Debug, so that
// `@testable import` reaches the socket handlers, which are internal.
if Context.environment["TOKENBROKER_FUZZ"] == "1" {
    let nio: (String) -> Target.Dependency = { .product(name: $0, package: "swift-nio") }
    package.targets += [
        // libFuzzer's driver, called from each target's main.swift (see its header).
        .systemLibrary(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),
        // Bytes of an NDJSON connection → lines → `BrokerRequest`s (and the answers' JSON).
        .executableTarget(
            name: "FuzzNDJSON", dependencies: ["CLibFuzzer", "BrokerServer", "TokenBrokerProtocol", nio("NIOCore"), nio("NIOEmbedded")],
            path: "Fuzz/FuzzNDJSON"),
        // Any bytes on the socket through the real pipeline: sniffer, HTTP (and NDJSON) handlers.
        .executableTarget(
            name: "FuzzHTTP",
            dependencies: ["CLibFuzzer", "BrokerServer", "TokenBrokerProtocol", nio("NIOCore"), nio("NIOEmbedded"), nio("NIOHTTP1")],
            path: "Fuzz/FuzzHTTP"),
        // JWT payload and compact-JWS decoding (`JWTClaims`, `Assertion`).
        .executableTarget(name: "FuzzJWT", dependencies: ["CLibFuzzer", "TokenExchange"], path: "Fuzz/FuzzJWT"),
        // Entra token endpoint answers: success bodies, error bodies, `Retry-After`.
        .executableTarget(name: "FuzzEntraResponse", dependencies: ["CLibFuzzer", "TokenExchange"], path: "Fuzz/FuzzEntraResponse"),
        // YAML text → `BrokerConfiguration` or `ConfigurationError`.
        .executableTarget(name: "FuzzConfiguration", dependencies: ["CLibFuzzer", "BrokerApp", "TokenExchange"], path: "Fuzz/FuzzConfiguration"),
    ]
    for target in package.targets where target.type == .regular || target.type == .executable {
        target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-sanitize=fuzzer,address"])]
        if target.name.hasPrefix("Fuzz") {
            target.linkerSettings = (target.linkerSettings ?? []) + [.unsafeFlags(["-sanitize=fuzzer,address"])]
        }
    }
}

// Release executables on Linux (docs/benchmarks.md, third round): lld instead of gold, and
// no dynamic symbol table for the executable's own 40,000 symbols (the loader searched it for
// every library symbol it bound). Relative relocations are packed (DT_RELR) where the build
// machine's glibc can load them (2.36+; TOKENBROKER_PACK_RELOCATIONS=0 turns them off for a
// binary meant for an older glibc); unpacked they are 4 MiB the loader reads at every start.
// The daemon's code that runs at start-up, then the code that runs when serving, is laid out
// first (scripts/symbol-order writes the list), so the pages it touches are a few MiB instead
// of scattered over 20. Releases are built by scripts/release-build: `--static-swift-stdlib`
// (the Swift runtime and FoundationEssentials in the executable) and one section per function
// in every module (without it the list could only place whole modules); both flags must reach
// every compile, dependencies included, so they cannot live here.
#if canImport(Glibc)
let glibcVersion: [Int] = {
    var text = [CChar](repeating: 0, count: 64)  // "glibc 2.36"
    guard confstr(Int32(_CS_GNU_LIBC_VERSION), &text, text.count) > 0 else { return [] }
    let version = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return version.split(separator: " ").last?.split(separator: ".").compactMap { Int($0) } ?? []
}()
let glibcLoadsRELR =
    glibcVersion.count >= 2 && (glibcVersion[0], glibcVersion[1]) >= (2, 36)
    && Context.environment["TOKENBROKER_PACK_RELOCATIONS"] != "0"
#else
let glibcLoadsRELR = false
#endif
for target in package.targets where target.type == .executable && !target.name.hasPrefix("Fuzz") {
    // `-L linker`: its `libstdc++.so` is a linker script naming the static archive, so the
    // toolchain's own `-lstdc++` (ahead of any flag a package can add) links libstdc++ in
    // (idle RSS -1.5 MiB, docs/benchmarks.md).
    var flags = ["-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-L\(Context.packageDirectory)/linker"]
    if glibcLoadsRELR { flags += ["-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"] }
    if target.name == "tokenbrokerd" || target.name == "tokenbroker" {
        // The daemon's start-up and serving code first; the CLI's `relay` (in every pod). Code
        // without a symbol, which the list cannot name, goes in front of it all.
        flags += [
            "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/Sources/\(target.name)/symbol-order.txt",
            "-Xlinker", "--no-warn-symbol-ordering",
            "-Xlinker", "-T", "-Xlinker", "\(Context.packageDirectory)/linker/local-code-first.ld",
        ]
        target.exclude.append("symbol-order.txt")
    }
    if target.name == "tokenbroker", Context.environment["TOKENBROKER_STATIC_CLI"] == "1" {
        // The CLI, which runs in every pod as `tokenbroker relay`, links no shared library:
        // fully static (static-pie, so still at a random address), it maps no loader, libc or
        // libstdc++ and binds no symbols at start (relay idle RSS 7.5-8.0 -> 5.2 MiB,
        // docs/benchmarks.md) and runs in an image without a libc. Only scripts/release-build
        // asks for it: glibc's static-pie start aborts on the `$ORIGIN` run path a plain
        // `swift build -c release` adds (release-build passes --disable-local-rpath).
        flags += ["-static-executable", "-Xclang-linker", "-static-pie"]
    }
    target.linkerSettings = (target.linkerSettings ?? []) + [.unsafeFlags(flags, .when(platforms: [.linux], configuration: .release))]
}

// Strict settings for every target: explicit `any`, imports that show the
// module boundary, and members visible only where their module is imported.
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    // CI (.ci/run) builds with warnings as errors, so a new warning in our code fails the run;
    // a local build only warns (dependencies are never affected).
    if Context.environment["TOKENBROKER_WARNINGS_AS_ERRORS"] == "1" { settings.append(.unsafeFlags(["-warnings-as-errors"])) }
    // Exclusivity is checked at run time in debug builds, which every test runs, and not in
    // release builds, as the standard library itself is built: the checks were ~6 % of the
    // daemon's CPU per pipelined answer (docs/benchmarks.md, ninth round).
    if target.type != .test { settings.append(.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))) }
    target.swiftSettings = settings
}
