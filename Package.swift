// swift-tools-version:6.2
import PackageDescription

// Layout and the reason for each target: docs/ARCHITECTURE.md.
let package = Package(
    name: "vtd-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vtdbridged", targets: ["vtdbridged"]),
        .executable(name: "vtdbridgectl", targets: ["vtdbridgectl"]),
        .executable(name: "vtdbridge-sim", targets: ["vtdbridge-sim"]),
        .library(name: "Bridge", targets: ["Bridge"]),
        .library(name: "VTd", targets: ["VTd"]),
        .library(name: "Wire", targets: ["Wire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // C shim: the <linux/vfio.h> request numbers Swift cannot import, and
        // ioctl wrappers that return -errno.
        .target(name: "CVFIO"),
        // Containers, groups, devices and their errors: a thin layer over the
        // kernel. VTd for DMAPermission only: MAP_DMA takes the same
        // permission type the guest's tables produce.
        .target(name: "VFIO", dependencies: [
            "CVFIO", "VTd",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Pure VT-d model: entries, the second-level walk, invalidation
        // descriptors; and DMAPermission, the one read/write type every layer
        // uses, down to VFIO's MAP_DMA flags. Depends on nothing.
        .target(name: "VTd"),
        // The guest side of VT-d: writes tables and invalidations the way a guest
        // driver does. Used by tests and by the simulator.
        .target(name: "VTdGuest", dependencies: ["VTd"]),
        // Guest RAM, address spaces, the shadow map, sync, and the backend seam.
        .target(name: "Bridge", dependencies: [
            "VTd", "VFIO",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // C shim for socket calls Swift cannot express: SCM_RIGHTS (CMSG_*
        // macros), SO_PEERCRED, memfd_create, signalfd. Returns -errno.
        .target(name: "CSocket"),
        // Unix sockets, fd passing, peer credentials, poll, signals, sd_notify.
        .target(name: "UnixIO", dependencies: ["CSocket"]),
        // Codecs for the event channel (binary) and the control socket (JSON
        // lines). No I/O.
        .target(name: "Wire", dependencies: ["VTd"]),
        // Blocking clients of both sockets, for the CLI, the simulator, tests,
        // and VMM authors writing Swift; and the number syntax the CLI's and
        // the simulator's options share.
        .target(name: "VTdBridgeClient", dependencies: ["Wire", "UnixIO", "VTd"]),
        // The service: sockets, sessions, lifecycle, config, state.
        .target(name: "Daemon", dependencies: [
            "Bridge", "VFIO", "VTd", "Wire", "UnixIO",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Configuration", package: "swift-configuration"),
        ]),
        .executableTarget(name: "vtdbridged", dependencies: [
            "Daemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "vtdbridgectl", dependencies: [
            "Bridge", "VTd", "Wire", "UnixIO", "VTdBridgeClient",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "vtdbridge-sim", dependencies: [
            "Bridge", "VTd", "VTdGuest", "Wire", "UnixIO", "VTdBridgeClient", "VFIO", "CSocket",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // make bench: the host figures (sync cost, memory, invalidation rate)
        // and the table that docs/BENCHMARKS.md is written from.
        .executableTarget(name: "vtdbridge-bench", dependencies: [
            "Bridge", "VTd", "VTdGuest",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Test doubles live here and only here.
        .target(name: "VTdBridgeTestSupport", dependencies: ["Bridge", "VTd", "VTdGuest"]),

        .testTarget(name: "CVFIOTests", dependencies: ["CVFIO"]),
        .testTarget(name: "VFIOTests", dependencies: ["VFIO", "VTd"]),
        .testTarget(name: "VTdTests", dependencies: ["VTd", "VTdGuest"]),
        .testTarget(name: "BridgeTests", dependencies: ["Bridge", "VTd", "VTdGuest", "VTdBridgeTestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["Bridge", "VTd", "VTdGuest", "VTdBridgeClient", "VTdBridgeTestSupport"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "VTd", "VTdGuest"]),
        .testTarget(name: "UnixIOTests", dependencies: ["UnixIO"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Wire", "UnixIO", "Bridge", "VTd", "VTdGuest", "VTdBridgeClient"]),

        // Fuzzing (docs/RELIABILITY.md, "Fuzzing"): the harnesses and their
        // checks, one libFuzzer executable per target (a file replayer in a
        // normal build), and the XCTest replay of the committed corpora.
        .target(name: "VTdBridgeFuzzing", dependencies: [
            "Wire", "Bridge", "VTd", "VTdGuest", "VFIO",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "FuzzFrames", dependencies: ["VTdBridgeFuzzing"]),
        .executableTarget(name: "FuzzControl", dependencies: ["VTdBridgeFuzzing"]),
        .executableTarget(name: "FuzzSync", dependencies: ["VTdBridgeFuzzing"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["VTdBridgeFuzzing", "Bridge", "VTd", "VTdBridgeTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

// Zero warnings, kept so: in every target of this package a compiler warning
// is an error, so no build (debug, release, tests, fuzz, sanitizers) can
// succeed with one, and an unchanged file was compiled warning-free when it
// was last compiled. Dependencies are not affected (SwiftPM applies warning
// settings to the root package only). The Makefile checks what is left: the
// linker's and SwiftPM's own warnings (scripts/no-warnings).
for target in package.targets {
    if ["CVFIO", "CSocket"].contains(target.name) {
        target.cSettings = (target.cSettings ?? []) + [.treatAllWarnings(as: .error)]
    } else {
        target.swiftSettings = (target.swiftSettings ?? []) + [.treatAllWarnings(as: .error)]
    }
}
